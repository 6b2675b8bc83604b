"""The spark backend of the ALS router, run in ``local[2]`` mode.

Skipped only where pyspark or a Java runtime is missing (the reason is printed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from llmrec.datasets import make_synthetic
from llmrec.encoders import TfidfEncoder
from llmrec.errors import ConfigError
from llmrec.routers import load_router, make_router
from llmrec.routers.cf import als_backend
from llmrec.routers.spark_als import spark_available, write_log

_OK, _WHY = spark_available()
needs_spark = pytest.mark.skipif(not _OK, reason=f"spark backend not testable here: {_WHY}")
PARAMS = dict(factors=8, iterations=8, random_state=0)


@pytest.fixture(scope="module")
def data():
    rec = make_synthetic(500, 10, n_topics=4, seed=0)
    return rec.select_prompts(np.arange(420)), rec.select_prompts(np.arange(420, 500))


@pytest.fixture(scope="module")
def spark():
    if not _OK:
        pytest.skip(_WHY)
    from llmrec.routers.spark_als import get_spark
    s = get_spark("local[2]", partitions=2)
    yield s
    s.stop()


def _enc():
    return TfidfEncoder(dim=32, n_features=2 ** 12)


def _agreement(a, b, test):
    Sa, Sb = a.score(test), b.score(test)
    per_prompt = float(np.mean([spearmanr(x, y)[0] for x, y in zip(Sa, Sb)]))
    llm_level = float(spearmanr(Sa.mean(axis=0), Sb.mean(axis=0))[0])
    return per_prompt, llm_level


def test_unknown_backend_is_refused(data):
    with pytest.raises(ConfigError, match="unknown ALS backend"):
        make_router("als", backend="dask").fit(data[0], encoder=_enc())
    assert als_backend("spark").__name__ == "_spark_als"


@needs_spark
def test_spark_rankings_agree_with_single_machine_als(data, spark, tmp_path):
    train, test = data
    single = make_router("als", **PARAMS).fit(train, encoder=_enc())
    dist = make_router("als", backend="spark", spark_partitions=2, **PARAMS).fit(
        train, encoder=_enc())
    per_prompt, llm_level = _agreement(single, dist, test)
    assert per_prompt >= 0.9 and llm_level >= 0.9, (per_prompt, llm_level)
    # same saved format: it loads and recommends without Spark being involved
    dist.save(tmp_path / "m")
    back = load_router(tmp_path / "m")
    np.testing.assert_array_equal(back.recommend(test, k=2)[0], dist.recommend(test, k=2)[0])
    assert set(np.load(tmp_path / "m" / "router.npz").files) == \
        set(single._get_state()[1])


@needs_spark
def test_fit_parquet_reads_a_partitioned_log(data, spark, tmp_path):
    train, test = data
    log = write_log(train, tmp_path / "log", partitions=3)
    assert len(list(log.glob("part=*"))) == 3
    r = make_router("als", backend="spark", spark_partitions=2, **PARAMS)
    r.fit_parquet(log, prompts=train.prompts, llms=train.llms, encoder=_enc())
    single = make_router("als", **PARAMS).fit(train, encoder=_enc())
    per_prompt, llm_level = _agreement(single, r, test)
    assert per_prompt >= 0.9 and llm_level >= 0.9, (per_prompt, llm_level)
    assert r.llm_names_ == train.llm_names
    r.save(tmp_path / "m2")
    assert load_router(tmp_path / "m2").recommend(test.prompts.text.tolist()[:3], k=1)[0].shape \
        == (3, 1)
    with pytest.raises(ConfigError, match="backend='spark'"):
        make_router("als").fit_parquet(log, prompts=train.prompts)


@needs_spark
def test_fit_parquet_names_missing_columns(spark, tmp_path):
    from llmrec.errors import DataFormatError
    pd.DataFrame({"prompt_id": ["a"], "model": ["x"], "score": [1.0]}).to_parquet(
        tmp_path / "bad.parquet")
    r = make_router("als", backend="spark", **PARAMS)
    with pytest.raises(DataFormatError, match="lacks column"):
        r.fit_parquet(tmp_path / "bad.parquet", prompts=pd.DataFrame({"prompt_id": ["a"]}))
