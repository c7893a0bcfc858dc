"""Staged batches between steps: Parquet files in the run's staging folder, never data in XCom."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ledgerlink import settings


def stage_frame(flow: str, run_id: str, name: str, df: pd.DataFrame) -> str:
    path = settings.staging_dir(flow, run_id) / f"{name}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)  # a half-written batch is never read as a whole one
    return str(path)


def read_frame(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)


def read_column(path: str, column: str) -> list:
    """One column of a staged batch, without reading the rest."""
    return pd.read_parquet(path, columns=[column])[column].tolist()


def stage_json(flow: str, run_id: str, name: str, data) -> str:
    path = settings.staging_dir(flow, run_id) / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(path)
    return str(path)


def read_json(path: str):
    return json.loads(Path(path).read_text(encoding="utf-8"))
