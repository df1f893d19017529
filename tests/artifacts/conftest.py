from tests.core.conftest import built, checkout  # noqa: F401 - the simulated host's fixtures
