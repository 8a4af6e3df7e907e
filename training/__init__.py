"""Training, evaluation and data tools for the CFI lifter (ROS-free)."""
