"""Pure computation on in-memory data: no files, no Feast, no MLflow. Unit-tested on tiny frames."""
