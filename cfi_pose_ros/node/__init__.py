"""ROS 2 glue: the lifting node and its message conversions (imports rclpy)."""
