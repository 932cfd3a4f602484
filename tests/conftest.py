"""Suite-wide fixtures."""
import logging

import pytest
import torch


@pytest.fixture(autouse=True)
def _no_logging_handlers_outlive_a_test():
    """A test that runs a step's main() in-process gets setup_logging's console handler on the root
    logger, bound to the sys.stderr of that moment (capsys's buffer, closed when the test ends).
    Left there, every later record from any test goes to a closed stream ("I/O operation on closed
    file"), so the handlers and level a test installed go when it ends; pytest's own stay."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before and type(handler) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def one_thread():
    """Tiny tensors: on a shared 2-core machine a second torch thread makes each op 10-60x slower.
    A module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
