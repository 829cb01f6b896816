"""The check before publishing: every document id exactly once across ``data/`` and ``duplicates/``."""

import pytest

from pipelines.dedup.pipeline import AccountingError, check_accounting

GOOD_DATA = [1, 2, 3]
GOOD_DUPLICATES = [(4, "exact"), (5, "near"), (6, "near"), (7, "index")]


def _check(spark, data, duplicates, n_documents):
    kept = spark.createDataFrame([(i,) for i in data], "doc_id long")
    removed = spark.createDataFrame(duplicates, "doc_id long, match string")
    return check_accounting(kept, removed, n_documents)


def test_a_complete_output_is_counted_by_outcome(spark):
    assert _check(spark, GOOD_DATA, GOOD_DUPLICATES, 7) == {"kept": 3, "exact": 1, "near": 2, "index": 1}


@pytest.mark.parametrize("data,duplicates,n_documents", [
    (GOOD_DATA, GOOD_DUPLICATES, 8),  # a document lost
    (GOOD_DATA + [4], GOOD_DUPLICATES, 8),  # one document in both tables, one lost: the count is right
    (GOOD_DATA, GOOD_DUPLICATES + [(5, "exact")], 8),  # removed twice, the count still right
    (GOOD_DATA + [3], GOOD_DUPLICATES, 8),  # kept twice
    (GOOD_DATA, GOOD_DUPLICATES[:-1] + [(7, "other")], 7),  # an outcome the job does not write
], ids=["missing", "kept-and-removed", "removed-twice", "kept-twice", "unknown-match"])
def test_an_output_that_does_not_account_for_each_document_once_is_refused(spark, data, duplicates,
                                                                              n_documents):
    with pytest.raises(AccountingError, match="refusing to publish"):
        _check(spark, data, duplicates, n_documents)
