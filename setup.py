"""pip installation of the ROS-free library, for people who only train, evaluate or export.

    pip install .            # cfi_pose_ros (model, weights, inference, geometry) + training

The ROS 2 package (messages, node, launch and config files) is built with colcon
from CMakeLists.txt; `cfi_pose_ros.node` needs rclpy and the generated messages.
"""
from setuptools import find_packages, setup

setup(
    name="cfi_pose_ros",
    version="0.1.0",
    description="3D human pose lifting with the Cross-Feature Interaction Network (ROS-free library)",
    # the code's; the packaged weights and demo clip are derived from Human3.6M (README, Licences)
    license="Apache-2.0 (code); weights and demo clip: Human3.6M licence, non-commercial research use only",
    python_requires=">=3.10",
    packages=find_packages(include=["cfi_pose_ros", "cfi_pose_ros.*", "training", "training.*"]),
    package_data={"cfi_pose_ros": ["weights/*.safetensors", "weights/*.json", "data/*.npz", "node/*.xml"]},
    install_requires=["numpy>=1.24", "torch>=2.5", "safetensors>=0.4", "onnx>=1.15", "onnxscript",
                      "onnxruntime>=1.17", "tqdm", "matplotlib>=3.8.4", "scipy", "opencv-python-headless",
                      "pyyaml", "mcap"],
    extras_require={"test": ["pytest", "hypothesis", "psutil"]},
    entry_points={"console_scripts": [
        "cfi-train=training.train:cli",
        "cfi-evaluate=training.evaluate:cli",
        "cfi-export=cfi_pose_ros.export:main",
    ]},
)
