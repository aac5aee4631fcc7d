"""Delayed labels: ``/feedback`` matches confirmed labels with the scores this process returned."""

from __future__ import annotations

from fastapi import APIRouter

from mlops_recipes.observability import FEEDBACK
from serving.deps import FeedbackAuthorized, State
from serving.errors import PROBLEM_RESPONSES, too_many
from serving.schemas import FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["monitoring"])


@router.post(FEEDBACK, response_model=FeedbackResponse, responses=PROBLEM_RESPONSES, dependencies=[FeedbackAuthorized])
async def feedback(request: FeedbackRequest, state: State) -> FeedbackResponse:
    """Confirmed labels of transactions scored earlier with a ``transaction_id``: live precision and recall.

    Labels are matched with the scores this process returned (the last SERVING_REMEMBERED_SCORES); each
    score counts once. Unmatched ids are returned, not an error: a label may outlive the memory of a score.
    """
    if len(request.labels) > state.serving.max_batch:
        raise too_many(len(request.labels), state.serving.max_batch, ("body", "labels"))
    result = state.monitor.label([(label.transaction_id, label.is_fraud) for label in request.labels])
    return FeedbackResponse(
        matched=result.matched, unmatched=len(result.unmatched_ids), unmatched_ids=result.unmatched_ids
    )
