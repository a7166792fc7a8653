"""scikit-learn's estimator checks on every estimator and transformer skstellar exports."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skstellar import MDwarfMetallicityRegressor
from skstellar.preprocessing import AbsoluteMagnitudes

# Small, fast configurations of each estimator (the checks fit dozens of times).
ESTIMATORS = [
    # The paper's configuration (tanh output, linear activations, weighted MSE).
    MDwarfMetallicityRegressor(max_epochs=5, batch_size=16, random_state=0),
    # An unbounded output and a faster learning rate: must pass every check.
    MDwarfMetallicityRegressor(output_activation=None, lr=1e-2, max_epochs=30, batch_size=16,
                               architecture="released", random_state=0),
    AbsoluteMagnitudes(),
]

EXPECTED_FAILURES = {
    "tanh": {
        "check_regressors_train": (
            "The paper's tanh output bounds predictions to (-1, 1) (metallicities in dex), "
            "while this check standardises its targets to unit variance (values up to ~3) "
            "and asserts R^2 > 0.5. The unbounded configuration below passes it."
        ),
    },
}


def _expected_failed_checks(estimator):
    if isinstance(estimator, MDwarfMetallicityRegressor) and estimator.output_activation == "tanh":
        return EXPECTED_FAILURES["tanh"]
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
