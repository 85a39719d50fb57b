"""``vouchers/terms.detached``: the rows the hot paths write with Core statements and hand back
as entities (the issued voucher, the publication, the redemption)."""

from __future__ import annotations

import subprocess
import sys

FIRST_USE = """
from voucherd.vouchers.terms import detached
from voucherd.redemptions.models import Redemption
redemption = detached(Redemption, {"id": "r_1", "amount": 5, "metadata_": None})
print(redemption.id, redemption.amount, redemption.metadata_, redemption.rollback_id)
"""


def test_an_entity_made_detached_first_in_a_process_reads_its_attributes() -> None:
    """A fresh process (a floor client, a CLI command) whose first use of the mappers is
    ``detached``: its attributes read as set, and those not given as None. Made before the
    mappers were configured, reading one raised AttributeError."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_USE], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["r_1", "5", "None", "None"]
