"""``/metrics``: the Prometheus exposition of this service (all workers' figures in multiprocess mode)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mlops_recipes.observability import METRICS
from serving.deps import State

router = APIRouter()


@router.get(METRICS, include_in_schema=False)
async def metrics(state: State) -> Response:
    """The exposition, in the format the scraper asked for."""
    body, content_type = state.metrics.exposition()
    return Response(body, media_type=content_type)
