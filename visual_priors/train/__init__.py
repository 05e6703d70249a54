"""The one trainer; pre-training and adaptation stages are configurations of it."""
