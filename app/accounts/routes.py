"""Routes: filled in by the feature work."""

from fastapi import APIRouter

router = APIRouter()
