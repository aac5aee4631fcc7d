"""The stream scorer: transactions from a Redis stream, one decision per transaction to another stream.

``python -m serving.stream`` (``mlops stream``, ``make stream``) runs it. It scores with the same model manager,
feature lookup, customer update and decision code as ``/predict`` (:mod:`serving.scoring`); the message and
decision shapes, idempotency keys and batching are in :mod:`mlops_recipes.core.stream`. docs/streaming.md has
the semantics (at-least-once delivery, idempotent effects), the faults it survives and its metrics.
"""
