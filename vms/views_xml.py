"""The VM's XML editor pages and its Logs tab body.

No page here calls libvirt: the editor's script fetches the definition from the API, which reads
kvmweb's copy in the VM's row, the review diffs the text the browser sent against the text it had
loaded, and the logs are file reads.
"""

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from kvmweb import access
from kvmweb.api.errors import error_body
from kvmweb.errors import Invalid
from kvmweb.ui import refusals_as_pages
from vms import logs, selectors, xml_editor
from vms.models import VirtualMachine


def _editable(request: HttpRequest, vm_uuid: UUID) -> VirtualMachine:
    vm = selectors.vm_get(request.user, vm_uuid)
    access.require(request.user, "vm.xml", vm)
    return vm


def _is_fetch(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


@login_required
@require_http_methods(["GET", "POST"])
@refusals_as_pages
def vm_xml_edit(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    """GET: an empty editor its script fills from the API. POST ("Back to editing"): the text sent."""
    vm = _editable(request, vm_uuid)
    context = {
        "vm": vm,
        "xml": request.POST.get("xml", "") if request.method == "POST" else "",
        "original": request.POST.get("original", "") if request.method == "POST" else "",
    }
    return render(request, "vms/xml_edit.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@refusals_as_pages
def vm_xml_review(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    """The side-by-side diff of the edited XML against what the editor loaded, or the refusal."""
    vm = _editable(request, vm_uuid)
    if request.method == "GET":
        return redirect("vms:xml_edit", vm.uuid)
    xml, original = request.POST.get("xml", ""), request.POST.get("original", "")
    try:
        xml_editor.xml_check(vm=vm, xml=xml)
    except Invalid as exc:
        if _is_fetch(request):
            return JsonResponse(error_body(exc.code, exc.message, exc.details), status=400)
        line = exc.details.get("line")
        context = {"vm": vm, "xml": xml, "original": original, "error": exc.message, "error_line": line}
        return render(request, "vms/xml_edit.html", context, status=400)
    context = {"vm": vm, "xml": xml, "original": original, "diff": xml_editor.xml_diff(original, xml)}
    template = "vms/xml_diff.html" if _is_fetch(request) else "vms/xml_review.html"
    return render(request, template, context)


@login_required
@require_GET
@refusals_as_pages
def vm_log(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    """The Logs tab's body, fetched when the tab opens (and on Refresh)."""
    vm = selectors.vm_get(request.user, vm_uuid)
    response = render(request, "vms/tab_logs.html", {"vm": vm, "logs": logs.vm_logs(vm)})
    response["Cache-Control"] = "no-store"
    return response
