"""The closing summary of a batch run."""
from vlground.jobs.progress import Summary


def test_the_rate_counts_what_was_read_not_the_failures():
    summary = Summary(done=6, failed=2, seconds=2.0)
    assert summary.images_per_second == 2.0
    assert summary.describe().startswith("done 6, failed 2, 2.0 s, 2.00 images/s")
