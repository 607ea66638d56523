"""The planner's mathematics: a slot for every schedule, the in-flight load under the cap.

Pure: numpy, scipy and `common.slots` only (see README.md here).
"""
