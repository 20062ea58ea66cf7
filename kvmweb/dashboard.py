from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hosts.selectors import capacity, host_counts, hosts_for_list
from kvmweb.operations.models import Operation
from kvmweb.operations.selectors import operations_for
from vms.selectors import vm_state_counts


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    hosts = hosts_for_list(request.user)
    ops = operations_for(request.user)
    context = {
        "hosts": hosts,
        "host_counts": host_counts(hosts),
        "recent_operations": list(ops[:10]),
        "recent_failures": list(ops.filter(status=Operation.Status.FAILED)[:5]),
        "vm_counts": vm_state_counts(request.user),
        "capacity": capacity(request.user, hosts),
        "attention": [h for h in hosts if h.state == h.State.UNREACHABLE],
    }
    return render(request, "dashboard.html", context)
