"""The estimators ``from_sklearn`` is tested on, with methods, dtypes and notes.

``SUPPORTED_ESTIMATORS`` maps an estimator class name to ``{"methods": [...], "dtypes":
[...], "notes": str}``; the SUPPORTED.md generator renders it. ``dtypes`` lists the graph
float types covered by tests (float64 elsewhere may work where skl2onnx supports double).
Methods an estimator has but that have no ONNX conversion raise UnsupportedEstimatorError
when called; they are named in the notes.
"""

from __future__ import annotations

_F32 = ["float32"]
_F64 = ["float32", "float64"]
_CLASSIFIER = ["predict", "predict_proba", "predict_log_proba", "decision_function"]
_SCORES_ONLY = ["predict", "decision_function"]
_PROBA_ONLY = ["predict", "predict_proba", "predict_log_proba"]
_REGRESSOR = ["predict"]
_TRANSFORM = ["transform"]
_TREE_NOTE = "ai.onnx.ml TreeEnsemble ops; tensor strategy chosen by tree_strategy"


def _entry(methods, dtypes=_F32, notes=""):
    return {"methods": list(methods), "dtypes": list(dtypes), "notes": notes}


SUPPORTED_ESTIMATORS: dict[str, dict] = {
    "LinearRegression": _entry(_REGRESSOR),
    "Ridge": _entry(_REGRESSOR),
    "RidgeCV": _entry(_REGRESSOR),
    "Lasso": _entry(_REGRESSOR),
    "ElasticNet": _entry(_REGRESSOR),
    "SGDRegressor": _entry(_REGRESSOR),
    "SGDClassifier": _entry(_CLASSIFIER, notes="predict_proba only for probabilistic losses"),
    "LogisticRegression": _entry(_CLASSIFIER, _F64),
    "LogisticRegressionCV": _entry(_CLASSIFIER),
    "RidgeClassifier": _entry(_SCORES_ONLY),
    "RidgeClassifierCV": _entry(_SCORES_ONLY),
    "Perceptron": _entry(_SCORES_ONLY),
    "LinearSVC": _entry(_SCORES_ONLY),
    "LinearSVR": _entry(_REGRESSOR),
    "SVC": _entry(_CLASSIFIER, notes=(
        "every kernel; probabilities with probability=True; decision_function comes from a "
        "second graph without Platt scaling")),
    "NuSVC": _entry(_CLASSIFIER, notes=(
        "kernel='linear' can have dual coefficients of 1e3-1e5 that skl2onnx stores in "
        "float32: about 1% error on decision values")),
    "SVR": _entry(_REGRESSOR, _F64, notes="every kernel"),
    "NuSVR": _entry(_REGRESSOR, notes="every kernel"),
    "MLPClassifier": _entry(_PROBA_ONLY),
    "MLPRegressor": _entry(_REGRESSOR),
    "GaussianNB": _entry(_PROBA_ONLY),
    "BernoulliNB": _entry(_PROBA_ONLY),
    "MultinomialNB": _entry(_PROBA_ONLY),
    "KNeighborsClassifier": _entry(["predict", "predict_proba"],
                                   notes="pairwise distances run through the ai.onnx Scan operator"),
    "KNeighborsRegressor": _entry(_REGRESSOR, notes="pairwise distances run through the ai.onnx Scan operator"),
    "FixedThresholdClassifier": _entry(_CLASSIFIER, notes=(
        "bridge converter; binary; labels threshold the positive class's probability or "
        "decision value; decision_function is the inner estimator's (linear models, SVC)")),
    "TunedThresholdClassifierCV": _entry(_CLASSIFIER, notes=(
        "bridge converter while skl2onnx's ignores the tuned threshold; as "
        "FixedThresholdClassifier")),
    "KMeans": _entry(["predict", "transform"], notes=(
        "predict gives cluster ids in scikit-learn's int32; transform the distances")),
    "MiniBatchKMeans": _entry(["predict", "transform"], notes="as KMeans"),
    "GaussianMixture": _entry(["predict", "predict_proba", "score_samples"], notes=(
        "every covariance_type")),
    "BayesianGaussianMixture": _entry(["predict", "predict_proba", "score_samples"]),
    **{name: _entry(_TRANSFORM, _F64, notes=(
        "bridge converter: scikit-learn's own arithmetic (divides where it divides), bit "
        "for bit, so trees downstream see the same values"))
       for name in ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")},
    "Normalizer": _entry(_TRANSFORM),
    "Binarizer": _entry(_TRANSFORM),
    "PolynomialFeatures": _entry(_TRANSFORM),
    "SimpleImputer": _entry(_TRANSFORM, notes="NaN inputs accepted"),
    "OrdinalEncoder": _entry(_TRANSFORM, notes=(
        "numeric or text categories, as OneHotEncoder; with handle_unknown='error' an unknown "
        "category gives -1 instead of an error (from_sklearn warns)")),
    "OneHotEncoder": _entry(_TRANSFORM, notes=(
        "numeric categories, or text ones in a ColumnTransformer selecting columns by name; "
        "sparse_output=False")),
    "KBinsDiscretizer": _entry(_TRANSFORM, notes=(
        "encode='onehot-dense', 'ordinal', or 'onehot' as dense output (bridge runs "
        "skl2onnx's converter on an 'onehot-dense' view)")),
    "LabelBinarizer": _entry(_TRANSFORM, notes="integer class labels; input is y (1-D)"),
    "PCA": _entry(["transform", "score_samples"], notes=(
        "score_samples through bridge's option on skl2onnx's PCA converter")),
    "TruncatedSVD": _entry(_TRANSFORM),
    "KernelPCA": _entry(_TRANSFORM, notes="pairwise distances run through the ai.onnx Scan operator"),
    "Nystroem": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; kernels linear, rbf, laplacian, poly, sigmoid, cosine")),
    "SelectKBest": _entry(_TRANSFORM),
    "RFE": _entry(_CLASSIFIER + _TRANSFORM, notes=(
        "predictions through estimator_ on the selected columns (a pipeline view), "
        "transform the selection; the methods its estimator has")),
    "RFECV": _entry(_CLASSIFIER + _TRANSFORM, notes="as RFE"),
    "VarianceThreshold": _entry(_TRANSFORM),
    "Pipeline": _entry(_CLASSIFIER + _TRANSFORM, notes="the methods of its last step"),
    "ColumnTransformer": _entry(_TRANSFORM, notes=(
        "columns by position, or by name (then one graph input per column; text columns "
        "go in as strings, from a DataFrame)")),
    "FeatureUnion": _entry(_TRANSFORM),
    "StackingClassifier": _entry(_CLASSIFIER + _TRANSFORM, notes=(
        "bridge fixes binary stacks mixing predict_proba and decision_function; transform "
        "through bridge's transform view (one column per binary output, passthrough)")),
    "StackingRegressor": _entry(_REGRESSOR + _TRANSFORM, notes=(
        "transform through bridge's transform view")),
    "VotingClassifier": _entry(_PROBA_ONLY + _TRANSFORM, notes=(
        "bridge converter for flatten_transform=True; predict_proba for voting='soft'; "
        "transform through bridge's transform view (soft: probabilities, flattened or "
        "stacked; hard: each estimator's class index)")),
    "VotingRegressor": _entry(_REGRESSOR + _TRANSFORM, notes=(
        "transform through bridge's transform view")),
    "TransformedTargetRegressor": _entry(_REGRESSOR, notes=(
        "bridge converter; inverse_func in exp, expm1, log, log1p, sqrt, square, or a "
        "Standard/MinMax/MaxAbs/Robust scaler transformer")),
    "DummyClassifier": _entry(_PROBA_ONLY, _F64, notes=(
        "bridge converter; strategies prior, most_frequent, constant")),
    "DummyRegressor": _entry(_REGRESSOR, notes="bridge converter; every strategy"),
    "DecisionTreeClassifier": _entry(_PROBA_ONLY, notes=_TREE_NOTE),
    "DecisionTreeRegressor": _entry(_REGRESSOR, notes=_TREE_NOTE),
    "ExtraTreeClassifier": _entry(_PROBA_ONLY, notes=_TREE_NOTE),
    "ExtraTreeRegressor": _entry(_REGRESSOR, notes=_TREE_NOTE),
    "RandomForestClassifier": _entry(_PROBA_ONLY, notes=_TREE_NOTE),
    "RandomForestRegressor": _entry(_REGRESSOR, notes=_TREE_NOTE),
    "ExtraTreesClassifier": _entry(_PROBA_ONLY, notes=_TREE_NOTE),
    "ExtraTreesRegressor": _entry(_REGRESSOR, notes=_TREE_NOTE),
    "GradientBoostingClassifier": _entry(_CLASSIFIER, notes=_TREE_NOTE),
    "GradientBoostingRegressor": _entry(_REGRESSOR, notes=_TREE_NOTE),
    "HistGradientBoostingClassifier": _entry(_CLASSIFIER, notes=_TREE_NOTE),
    "HistGradientBoostingRegressor": _entry(_REGRESSOR, notes=_TREE_NOTE),
    # bridge converters (bridge/sklearn/converters), float64 covered by tests/sklearn/test_converters.py
    "RBFSampler": _entry(_TRANSFORM, _F64, notes="bridge converter"),
    "SkewedChi2Sampler": _entry(_TRANSFORM, _F64, notes="bridge converter"),
    "AdditiveChi2Sampler": _entry(_TRANSFORM, _F64, notes="bridge converter; zeros stay zero"),
    "PolynomialCountSketch": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; the FFT as MatMuls by the Fourier basis")),
    "KernelRidge": _entry(_REGRESSOR, _F64, notes=(
        "bridge converter; kernels linear, rbf, laplacian, poly, sigmoid, cosine")),
    "NearestCentroid": _entry(_CLASSIFIER, _F64, notes=(
        "bridge converter; metric euclidean (every method) or manhattan (predict)")),
    "EllipticEnvelope": _entry(["predict", "decision_function", "score_samples"], _F64,
                               notes="bridge converter; squared Mahalanobis distance"),
    "IsotonicRegression": _entry(_REGRESSOR + _TRANSFORM, _F64, notes=(
        "bridge converter; input one (N, 1) column; out_of_bounds 'nan' or 'clip'; "
        "transform gives predict's values")),
    "MissingIndicator": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; dense boolean output; missing_values NaN or a number; a feature "
        "missing only at inference is dropped (error_on_new cannot raise in a graph)")),
    "SplineTransformer": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; every extrapolation ('error' gives NaN where scikit-learn "
        "raises); NaN rows give zeros; sparse_output=False")),
    "FactorAnalysis": _entry(["transform", "score_samples"], _F64, notes="bridge converter"),
    "FastICA": _entry(_TRANSFORM, _F64, notes="bridge converter"),
    "SparseRandomProjection": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; dense output; n_components='auto' parsed as its fitted width")),
    "BernoulliRBM": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; score_samples (random by design) has no ONNX conversion")),
    "NeighborhoodComponentsAnalysis": _entry(_TRANSFORM),
    "Birch": _entry(["predict", "transform"], _F64, notes="bridge converter"),
    "BisectingKMeans": _entry(["predict", "transform"], _F64, notes=(
        "bridge converter; predict descends the bisecting tree as scikit-learn does")),
    "MeanShift": _entry(["predict"], _F64, notes="bridge converter"),
    "FrozenEstimator": _entry(_CLASSIFIER + _TRANSFORM, notes=(
        "bridge parser; converts as the estimator it wraps, with that estimator's methods")),
    "SelfTrainingClassifier": _entry(_CLASSIFIER, _F64, notes=(
        "bridge parser; converts as its fitted estimator_, with that estimator's methods")),
    "LabelPropagation": _entry(_PROBA_ONLY, _F64, notes="bridge converter; kernel='rbf'"),
    "LabelSpreading": _entry(_PROBA_ONLY, _F64, notes="bridge converter; kernel='rbf'"),
    "AffinityPropagation": _entry(["predict"], _F64, notes=(
        "bridge converter; needs cluster centers (not affinity='precomputed')")),
    "IsolationForest": _entry(["predict", "decision_function", "score_samples"], notes=(
        "converted with target_opset={'': 17, 'ai.onnx.ml': 3} by default")),
    # bridge converters for meta-estimators and encoders (tests/sklearn/test_converters_meta.py)
    "TargetEncoder": _entry(_TRANSFORM, _F64, notes=(
        "multiclass targets through a bridge converter (binary and continuous through "
        "skl2onnx's); numeric categories, NaN a category, unseen values get target_mean_")),
    "ClassifierChain": _entry(_CLASSIFIER, _F64, notes=(
        "bridge converter; binary links; every chain_method; predict in float64 like "
        "scikit-learn's")),
    "RegressorChain": _entry(_REGRESSOR, _F64, notes="bridge converter"),
    "RandomTreesEmbedding": _entry(_TRANSFORM, _F64, notes=(
        "bridge parser and converter; dense output (transform(X).toarray())")),
    "SequentialFeatureSelector": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; a Gather of the selected columns")),
    "GaussianProcessClassifier": _entry(_PROBA_ONLY, _F64, notes=(
        "bridge converter (skl2onnx's binary graph uses com.microsoft::Solve, and it refuses "
        "several classes); one-vs-rest Laplace; integer labels; float32 probabilities "
        "within 5e-4 (scikit-learn's erf-series coefficients cancel); onnxruntime has no "
        "double Erf, so float64 artifacts run in bridge only")),
    "Isomap": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; n_neighbors (not radius), euclidean metric; kNN by TopK, "
        "geodesic distances through the neighbours, the fitted kernel PCA")),
    "NMF": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; solver='cd' (shuffle=False) or 'mu' (beta_loss='frobenius'): "
        "scikit-learn's iterations in an ONNX Loop with its stopping rule (cd: the batch's "
        "violation ratio <= tol; mu: the error gain every 10 iterations), up to max_iter: "
        "the same iterations on the same batch; rows scored in other batches reach the "
        "same solution within tol")),
    "MiniBatchNMF": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; beta_loss='frobenius'; the multiplicative updates in an ONNX "
        "Loop with scikit-learn's start (the batch mean) and stopping rule")),
    "LatentDirichletAllocation": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; scikit-learn's E-step in an ONNX Loop (up to "
        "max_doc_update_iter, each document stopping at mean_change_tol as in scikit-learn, "
        "so batches do not matter) with its digamma series in standard ops")),
    "QuantileTransformer": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; output_distribution='uniform' (np.interp both ways by binary "
        "search, in float64); converts in ~0.1 s where skl2onnx's graph took minutes")),
    "KernelDensity": _entry(["score_samples"], _F64, notes=(
        "bridge converter; every kernel, sample weights, metric='euclidean'; the exact sum "
        "over the training rows (scikit-learn's tree sum drifts below about -20, and gives "
        "about -37 where bridge gives -inf: rows outside every compact kernel's support)")),
    "OutputCodeClassifier": _entry(["predict"], _F64, notes=(
        "bridge converter; constant code-book columns included; float64 with tree "
        "estimators: exact code-book ties may break otherwise (skl2onnx's tree ops give "
        "float32 probabilities)")),
    # text and dict inputs (bridge/sklearn/text): alone or first in a pipeline; the host side
    # runs scikit-learn's analyzer / murmurhash3, the weighting and the rest run as tensors
    "CountVectorizer": _entry(_TRANSFORM, _F64, notes=(
        "documents in; scikit-learn's analyzer on the host (every parameter, callables "
        "included); dense output; the ONNX artifact takes documents for analyzer='word' "
        "(onnxruntime agrees but for Python's special lower-casing: final sigma, dotted I), "
        "else the counts")),
    "TfidfVectorizer": _entry(_TRANSFORM, _F64, notes=(
        "as CountVectorizer; binary, sublinear_tf, idf and l1/l2 norm in the graph")),
    "HashingVectorizer": _entry(_TRANSFORM, _F64, notes=(
        "documents in; scikit-learn's murmurhash3 and alternate_sign on the host; dense "
        "output (n_features columns); the ONNX artifact takes the hashed counts")),
    "DictVectorizer": _entry(_TRANSFORM, _F64, notes=(
        "dicts in (numbers, strings, iterables of strings); unknown features ignored; dense "
        "output; the ONNX artifact takes the encoded matrix")),
    "FeatureHasher": _entry(_TRANSFORM, _F64, notes=(
        "input_type 'dict', 'pair' or 'string'; dense output; the ONNX artifact takes the "
        "hashed matrix")),
    "MultiLabelBinarizer": _entry(_TRANSFORM, _F64, notes=(
        "label sets in (transform); unknown labels ignored with scikit-learn's warning; "
        "int64 output, as scikit-learn's")),
    # methods and estimators added through bridge/sklearn/converters/{methods,searches,
    # outlier_scores,discriminant,radius_neighbors,linear_transforms}.py
    "LinearDiscriminantAnalysis": _entry(_CLASSIFIER + _TRANSFORM, notes=(
        "binary probabilities expit(d) by bridge's converter (skl2onnx's give expit(2d)); "
        "transform for solver 'svd' or 'eigen' (scikit-learn has none for 'lsqr')")),
    "QuadraticDiscriminantAnalysis": _entry(_CLASSIFIER, notes=(
        "decision_function through bridge's raw_scores option on skl2onnx's converter")),
    "PLSRegression": _entry(_REGRESSOR + _TRANSFORM, notes=(
        "transform through bridge's transform view (x scores)")),
    "PLSCanonical": _entry(_REGRESSOR + _TRANSFORM, notes="bridge converter; as PLSRegression"),
    "CCA": _entry(_REGRESSOR + _TRANSFORM, notes="bridge converter; as PLSRegression"),
    "PLSSVD": _entry(_TRANSFORM, notes="bridge converter (x scores)"),
    "OneClassSVM": _entry(["predict", "decision_function", "score_samples"], notes=(
        "score_samples (decision + offset_) through bridge's option on skl2onnx's converter")),
    "SGDOneClassSVM": _entry(["predict", "decision_function", "score_samples"],
                             notes="as OneClassSVM"),
    "GridSearchCV": _entry(_CLASSIFIER + _TRANSFORM, notes=(
        "converts as best_estimator_, with its methods; options reach it")),
    "RandomizedSearchCV": _entry(_CLASSIFIER + _TRANSFORM, notes=(
        "skl2onnx's GridSearchCV converter, registered by bridge; as GridSearchCV")),
    "OneVsOneClassifier": _entry(_SCORES_ONLY, notes=(
        "decision_function: the votes plus confidences skl2onnx's graph gives; integer "
        "class labels (string labels are computed in skl2onnx's graph)")),
    "MultiOutputClassifier": _entry(["predict", "predict_proba"], notes=(
        "predict_proba is an ONNX sequence: a list with one array per output")),
    "KNNImputer": _entry(_TRANSFORM, notes=(
        "skl2onnx's graph with local functions, inlined at import")),
    "RadiusNeighborsClassifier": _entry(["predict", "predict_proba"], notes=(
        "bridge converter (skl2onnx's graph fails in onnxruntime); euclidean or manhattan; "
        "rows without neighbours: outlier_label as scikit-learn, or, without one, the "
        "graph fails (IndexError in bridge, an error in onnxruntime) where scikit-learn "
        "raises ValueError")),
    "RadiusNeighborsRegressor": _entry(_REGRESSOR, notes=(
        "bridge converter; NaN for rows without neighbours, as scikit-learn")),
    "RadiusNeighborsTransformer": _entry(_TRANSFORM, notes=(
        "bridge converter; dense (N, n_fit) output, 0 outside the radius")),
    "FeatureAgglomeration": _entry(_TRANSFORM, notes=(
        "bridge converter; pooling_func numpy.mean only")),
    "SparsePCA": _entry(_TRANSFORM, notes=(
        "bridge converter; the ridge solve against the components as one matrix")),
    "MiniBatchSparsePCA": _entry(_TRANSFORM, notes="as SparsePCA"),
    "GaussianRandomProjection": _entry(_TRANSFORM, notes=(
        "n_components='auto' parsed as its fitted width")),
    "DictionaryLearning": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; transform_algorithm 'omp' (its steps unrolled) or 'threshold'; "
        "split_sign; the other algorithms (iterative solves) are refused")),
    "MiniBatchDictionaryLearning": _entry(_TRANSFORM, _F64, notes="as DictionaryLearning"),
    "SparseCoder": _entry(_TRANSFORM, _F64, notes="as DictionaryLearning"),
    "LocallyLinearEmbedding": _entry(_TRANSFORM, _F64, notes=(
        "bridge converter; barycentre weights of the euclidean nearest training rows (the "
        "regularised solve as an unrolled Cholesky), placed in the embedding")),
    "LabelEncoder": _entry(_TRANSFORM, notes=(
        "integer labels; input is y (1-D); an unseen label gives -1 where scikit-learn "
        "raises")),
}
