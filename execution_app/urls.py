"""Analyze-execution and jobs routes."""

from django.urls import path

from .apis import AnalyzeApi, AnalyzeAsyncApi, JobDetailApi, JobListApi

urlpatterns = [
    path("analyze-execution", AnalyzeApi.as_view(), name="analyze"),
    path("analyze-execution/async", AnalyzeAsyncApi.as_view(), name="analyze-async"),
    path("jobs", JobListApi.as_view(), name="job-list"),
    path("jobs/<str:job_id>", JobDetailApi.as_view(), name="job-detail"),
]
