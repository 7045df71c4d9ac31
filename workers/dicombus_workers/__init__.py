"""Celery side of dicombus."""
