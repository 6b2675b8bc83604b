"""The ``spark`` training backend of the ALS router: pyspark.ml ALS, implicit preferences.

Beyond one machine the outcome log (billions of (prompt, LLM, score) records) lives
in partitioned parquet; Spark reads it where it lies, factorises it, and only the
factors come back to the driver: ``n_prompts x factors`` and ``n_llms x factors``
floats. The prompt-side feature map is then fitted on the driver exactly as with
the single-machine backend, so the saved model (LLM factors + prompt-side map) is
the same format and ``recommend``, the service and the proxy use it unchanged,
without Spark.

Confidences follow the single-machine router (see :mod:`llmrec.routers.cf`): a
success has confidence ``1 + alpha * s`` at preference 1, an observed failure
``1 + neg_alpha * (1 - s)`` at preference 0, an unknown cell 1 at preference 0.
Spark's implicit ALS reads a rating ``r`` as preference ``r > 0`` with confidence
``1 + alpha_spark * |r|``; with ``alpha_spark = 1`` the ratings below reproduce
those confidences. Spark scales its L2 penalty by the number of positive ratings
of each row (ALS-WR); ``regParam`` is set to the router's ``regularization``
divided by the mean number of successes per prompt, so the two backends
regularise a typical prompt alike. Factors differ (other initialisation and
solver), rankings agree: tests/test_spark_als.py checks a rank correlation of at
least 0.9 with the single-machine ALS on the same data.

pyspark is an optional extra (``pip install 'llmrec[spark]'``) and needs Java.
See docs/scaling.md for ``master``, partitions, cost and when to switch.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataFormatError

INSTALL_HINT = "pip install 'llmrec[spark]' (and a Java 17 runtime)"


def spark_available() -> tuple[bool, str]:
    """(usable, reason): pyspark importable and a ``java`` on PATH or JAVA_HOME."""
    import os
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False, f"pyspark is not installed; {INSTALL_HINT}"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return False, "no Java runtime (java not on PATH, JAVA_HOME unset); install Java 17"
    return True, ""


def get_spark(master: str = "local[2]", partitions: int | None = None,
              app_name: str = "llmrec-als"):
    """A SparkSession (the active one when it exists, else a new one for ``master``)."""
    ok, why = spark_available()
    if not ok:
        raise ConfigError(f"the spark backend is not usable: {why}")
    from pyspark.sql import SparkSession
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    b = (SparkSession.builder.master(master).appName(app_name)
         .config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "2g"))
    if partitions:
        b = b.config("spark.sql.shuffle.partitions", str(int(partitions)))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_log(spark, path: str, prompt_col: str = "prompt_id", llm_col: str = "llm",
             score_col: str = "score"):
    """The (prompt_id, llm, score) columns of a parquet log (a file or a partitioned
    directory, e.g. ``log/date=2026-01-01/part-0.parquet``)."""
    from pyspark.sql import functions as F
    df = spark.read.parquet(str(path))
    missing = [c for c in (prompt_col, llm_col, score_col) if c not in df.columns]
    if missing:
        raise DataFormatError(f"{path}: parquet log lacks column(s) {missing}; found "
                              f"{df.columns}")
    return df.select(F.col(prompt_col).cast("string").alias("prompt_id"),
                     F.col(llm_col).cast("string").alias("llm"),
                     F.col(score_col).cast("double").alias("score"))


def als_factors(spark, log, prompt_ids, llm_names, *, factors: int, regularization: float,
                alpha: float, neg_alpha: float, success_threshold: float, iterations: int,
                random_state: int, partitions: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Implicit ALS in Spark on a (prompt_id, llm, score) DataFrame.

    Returns ``(U, V, seen)``: prompt factors in ``prompt_ids`` order, LLM factors in
    ``llm_names`` order (float32) and a boolean per prompt, False for prompts with
    no record in the log (their factors are zero).
    """
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F
    pmap = spark.createDataFrame(pd.DataFrame({"prompt_id": [str(p) for p in prompt_ids],
                                               "u": np.arange(len(prompt_ids), dtype=np.int32)}))
    lmap = spark.createDataFrame(pd.DataFrame({"llm": [str(x) for x in llm_names],
                                               "i": np.arange(len(llm_names), dtype=np.int32)}))
    thr = float(success_threshold)
    rating = (F.when(F.col("score") >= thr, F.greatest(F.lit(float(alpha)) * F.col("score"),
                                                      F.lit(1e-6)))
              .otherwise(-F.lit(float(neg_alpha)) * (F.lit(1.0) - F.col("score"))))
    data = (log.join(F.broadcast(lmap), "llm").join(pmap, "prompt_id")
            .select("u", "i", rating.cast("float").alias("r")))
    if partitions:
        data = data.repartition(int(partitions))
    stats = data.agg(F.sum((F.col("r") > 0).cast("long")).alias("pos"),
                     F.countDistinct("u").alias("users"), F.count("*").alias("n")).first()
    if not stats["n"]:
        raise DataFormatError("the log has no record of the given prompts and LLMs")
    if not stats["pos"]:
        raise ConfigError(f"no record is a success (score >= success_threshold={thr}); "
                          "lower success_threshold")
    mean_pos = stats["pos"] / max(stats["users"], 1)
    blocks = int(partitions) if partitions else 10
    als = ALS(rank=int(factors), maxIter=int(iterations),
              regParam=float(regularization) / max(mean_pos, 1.0), implicitPrefs=True,
              alpha=1.0, userCol="u", itemCol="i", ratingCol="r", seed=int(random_state),
              numUserBlocks=blocks, numItemBlocks=blocks, coldStartStrategy="nan")
    model = als.fit(data)

    def collect(frame, n):
        pdf = frame.toPandas()
        out = np.zeros((n, int(factors)), dtype=np.float32)
        seen = np.zeros(n, dtype=bool)
        if len(pdf):
            ids = pdf["id"].to_numpy(dtype=np.int64)
            out[ids] = np.asarray(pdf["features"].tolist(), dtype=np.float32)
            seen[ids] = True
        return out, seen

    U, seen = collect(model.userFactors, len(prompt_ids))
    V, _ = collect(model.itemFactors, len(llm_names))
    return U, V, seen


def write_log(records, path: Path, partitions: int = 4) -> Path:
    """Write records' long table as parquet partitioned by a ``part`` column."""
    long = records.to_long()[["prompt_id", "llm", "score"]]
    long["part"] = (np.arange(len(long)) * partitions // max(len(long), 1)).astype(np.int32)
    long.to_parquet(path, partition_cols=["part"], index=False)
    return path


def fit_records(router, records) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spark backend on in-memory records: they go through a temporary parquet log."""
    spark = get_spark(router.spark_master, router.spark_partitions)
    with tempfile.TemporaryDirectory(prefix="llmrec-spark-") as tmp:
        path = write_log(records, Path(tmp) / "log.parquet",
                         partitions=int(router.spark_partitions or 4))
        log = read_log(spark, str(path))
        return als_factors(spark, log, records.prompt_ids, records.llm_names,
                           **_als_kwargs(router))


def _als_kwargs(router) -> dict:
    return dict(factors=int(router.factors), regularization=float(router.regularization),
                alpha=float(router.alpha), neg_alpha=router._neg_alpha,
                # the Spark backend keeps the absolute threshold rule (0.5 unless given)
                success_threshold=float(0.5 if router.success_threshold is None
                                        else router.success_threshold),
                iterations=int(router.iterations), random_state=int(router.random_state),
                partitions=router.spark_partitions)
