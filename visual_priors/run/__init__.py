"""The experiment runner's parts: stage directories and locks, stage executors, the grid."""
