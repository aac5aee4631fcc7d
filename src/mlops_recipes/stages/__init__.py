"""Pipeline stages: thin steps that read inputs, call ``core`` and ``io``, and write outputs.

Each ``run(settings, params)`` returns a JSON-ready summary. DVC (``dvc.yaml``), the CLI and the Prefect
flows all call these functions; none of them holds logic of its own.
"""
