"""A task family that lives outside tunelab: one package, nothing else to change. Importing it
registers its task and metric, as ``tunelab.tasks.load_families`` does for every package named in
``tunelab.tasks.extra_families`` (tests/test_task_contract.py adds "fake_family" there)."""

from tunelab.metrics import Metric, register
from tunelab.tasks import TASKS

from .task import ContainsGood, error_rate

register(Metric("toy_error_rate", error_rate, higher_is_better=False))
TASKS.add(ContainsGood.name, ContainsGood())
