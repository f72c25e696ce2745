"""The payments domain: statuses, models and the use cases that change them."""
