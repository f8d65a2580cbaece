"""Teachers: who says which response is better (people, simulations, AI judges) behind one protocol.

`base` is torch-free; import implementations from their modules (`simulated`, `judge`, `people`).
"""

from prefloop.teachers.base import Preference, Teacher, compare_many, copeland_ranks, order_to_ranks

__all__ = ["Preference", "Teacher", "compare_many", "copeland_ranks", "order_to_ranks"]
