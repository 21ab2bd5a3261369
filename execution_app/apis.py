"""Analyze-execution and jobs API: validate, call one service or selector, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from project.errors import WardenError
from project.pagination import StrictLimitOffsetPagination

from .models import Job, JobStatus
from .selectors import job_get, job_list, job_wait
from .serializers import (
    AnalyzeAcceptedSerializer,
    AnalyzeRequestSerializer,
    AnalyzeResultSerializer,
    ErrorEnvelopeSerializer,
    JobPageSerializer,
    JobSerializer,
)
from .services import error_for_envelope, job_cancel, job_submit

ERRORS = {
    code: OpenApiResponse(ErrorEnvelopeSerializer, description=text)
    for code, text in {
        400: "ValidationError, PluginNotFound, PluginUnavailable or a plugin fault",
        401: "AuthenticationFailed",
        404: "NotFound",
        409: "Conflict",
        413: "PayloadTooLarge",
        503: "ServiceUnavailable",
    }.items()
}


def _submit(request: Request, *, wait: bool = False) -> Job:
    """Validate the analyze request, create the job and queue it (`wait`: for a caller that
    waits for its end)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 2**20
    length = str(request.META.get("CONTENT_LENGTH") or "0")
    size = int(length) if length.isdigit() else 0
    if size > limit:  # DRF streams JSON bodies past Django's own size check
        raise WardenError(
            "PayloadTooLarge",
            f"Request body is {size} bytes; the limit is {limit} bytes",
            details={"size": size, "limit": limit},
        )
    serializer = AnalyzeRequestSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    return job_submit(
        plugin_name=data["plugin"],
        tool=data.get("tool"),
        args=data.get("args"),
        file_bytes=data.get("image"),
        mime_type=data.get("mime_type"),
        timeout_s=data.get("timeout_s"),
        wait=wait,
    )


class AnalyzeApi(APIView):
    @extend_schema(
        request=AnalyzeRequestSerializer,
        responses={200: AnalyzeResultSerializer, **ERRORS},
        operation_id="analyze_execution",
    )
    def post(self, request: Request) -> Response:
        """Run a tool and wait for its result (up to the hard limit); 400 envelope on failure."""
        job = _submit(request, wait=True)
        wait = (
            job.hard_timeout_s + settings.WARDEN_LOAD_TIMEOUT_S + settings.WARDEN_SYNC_WAIT_MARGIN_S
        )
        job = job_wait(job=job, timeout_s=wait)
        if job.status == JobStatus.SUCCESS:
            body: dict[str, Any] = {
                "job_id": job.pk,
                "plugin": job.plugin_name,
                "tool": job.tool,
                "status": job.status,
                "result": job.result,
                "execution_time_ms": job.execution_time_ms,
            }
            return Response(AnalyzeResultSerializer(body).data)
        if job.status == JobStatus.FAILED and job.error:
            raise error_for_envelope(job.error)
        raise WardenError(
            "ServiceUnavailable",
            f"Job {job.pk} is still {job.status}; poll /v1/jobs/{job.pk} for its result",
            details={"status": job.status, "url": f"/v1/jobs/{job.pk}"},
            plugin=job.plugin_name,
            job_id=str(job.pk),
        )


class AnalyzeAsyncApi(APIView):
    @extend_schema(
        request=AnalyzeRequestSerializer,
        responses={202: AnalyzeAcceptedSerializer, **ERRORS},
        operation_id="analyze_execution_async",
    )
    def post(self, request: Request) -> Response:
        """Queue a tool run; 202 with the job's URL to poll."""
        job = _submit(request)
        body = {"job_id": job.pk, "status": "PENDING", "url": f"/v1/jobs/{job.pk}"}
        return Response(AnalyzeAcceptedSerializer(body).data, status=202)


class JobListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("plugin", str, description="Only this plugin's jobs"),
            OpenApiParameter("status", str, enum=list(JobStatus.values)),
            OpenApiParameter(
                "limit",
                int,
                description="Page size, default 50; values above 1000 are clamped to 1000",
            ),
            OpenApiParameter("offset", int, description="Index of the first job returned"),
        ],
        responses={200: JobPageSerializer, **ERRORS},
        operation_id="jobs_list",
    )
    def get(self, request: Request) -> Response:
        """Jobs, newest first, paginated."""
        jobs = job_list(
            plugin=request.query_params.get("plugin"), status=request.query_params.get("status")
        )
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobSerializer(page, many=True).data)


class JobDetailApi(APIView):
    @extend_schema(responses={200: JobSerializer, **ERRORS}, operation_id="jobs_retrieve")
    def get(self, request: Request, job_id: str) -> Response:
        """One job."""
        return Response(JobSerializer(job_get(job_id=job_id)).data)

    @extend_schema(responses={200: JobSerializer, **ERRORS}, operation_id="jobs_cancel")
    def delete(self, request: Request, job_id: str) -> Response:
        """Cancel a PENDING or RUNNING job; 409 Conflict once it has finished."""
        job = job_cancel(job=job_get(job_id=job_id))
        return Response(JobSerializer(job).data)
