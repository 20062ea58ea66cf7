// The create-VM wizard: one form in five steps. Each step is checked before the next one opens;
// the choices that depend on the host follow it; the summary shows what the VM will take.
import { $, $$, h, humanSizeKiB } from "./dom.js";

const form = $("[data-wizard]");
if (form) {
  const choices = JSON.parse($("#wizard-choices").textContent);
  const steps = $$("[data-step]", form).map((el) => el.dataset.step);
  let current = 0;

  const hostById = (id) => choices.hosts.find((host) => String(host.id) === String(id));
  const pickedHost = () => {
    const value = form.elements.host.value;
    if (value !== "auto") return hostById(value);
    const able = choices.hosts.filter((host) => host.state === "connected");
    return able.sort((a, b) => (b.free_kib || 0) - (a.free_kib || 0))[0];
  };
  const sourceType = () => (form.querySelector("input[name=source_type]:checked") || {}).value || "";
  const gib = (bytes) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

  function fillByHost(select, host) {
    const kind = select.dataset.byHost;
    const key = select.dataset.valueKey || "id";
    const wanted = select.value || select.dataset.selected || "";
    const items = choices[kind].filter((item) => host && item.host === host.id);
    const options = items.map((item) => {
      const label = kind === "pools" ? `${item.name} · ${gib(item.available)} free`
        : kind === "networks" ? `${item.name} (${item.mode}${item.active ? "" : ", inactive"})`
        : kind === "templates" ? `${item.name} · ${item.vcpus} vCPU, ${item.memory_mib} MiB`
        : `${item.name} · ${item.pool}${item.capacity ? ` · ${gib(item.capacity)}` : ""}`;
      return h("option", { value: item[key] }, label);
    });
    if (select.dataset.none) options.unshift(h("option", { value: "" }, select.dataset.none));
    if (!items.length && !select.dataset.none) options.unshift(h("option", { value: "" }, select.dataset.empty));
    select.replaceChildren(...options);
    if (options.some((option) => option.value === String(wanted))) select.value = String(wanted);
    else if (kind === "pools") {
      // Like libvirt's own tools, prefer the pool called "default".
      const preferred = items.find((item) => item.name === "default");
      if (preferred) select.value = String(preferred.id);
    }
    select.toggleAttribute("disabled", !items.length && !select.dataset.none);
  }

  function followHost() {
    const host = pickedHost();
    $$("select[data-by-host]", form).forEach((select) => fillByHost(select, host));
    const uefi = Boolean(host && host.firmwares.includes("efi"));
    const option = $("[data-needs-uefi]", form);
    option.disabled = !uefi;
    if (!uefi && form.elements.firmware.value === "uefi") form.elements.firmware.value = "bios";
    $("[data-uefi-hint]", form).hidden = uefi;
    // Offer KVM only where the host has it; the server checks again.
    const kvm = $("#f-virt option[value=kvm]", form);
    kvm.disabled = Boolean(host && !host.virt_types.includes("kvm"));
    if (kvm.disabled && form.elements.virt_type.value === "kvm") form.elements.virt_type.value = "auto";
  }

  function showSourcePanels() {
    const type = sourceType();
    $$("[data-source-panel]", form).forEach((panel) => {
      panel.hidden = !panel.dataset.sourcePanel.split(" ").includes(type);
    });
  }

  function stepValid(index) {
    const section = $(`[data-step="${steps[index]}"]`, form);
    const fields = $$("input, select, textarea", section).filter((el) => !el.closest("[hidden]") && !el.disabled);
    for (const field of fields) {
      if (!field.checkValidity()) {
        field.classList.add("is-invalid");
        field.reportValidity();
        return false;
      }
      field.classList.remove("is-invalid");
    }
    if (steps[index] === "source" && !sourceType()) {
      $("input[name=source_type]", section).reportValidity();
      return false;
    }
    return true;
  }

  function show(index) {
    current = Math.max(0, Math.min(index, steps.length - 1));
    steps.forEach((step, i) => {
      $(`[data-step="${step}"]`, form).hidden = i !== current;
      const tab = $(`[data-step-to="${step}"]`, form);
      tab.setAttribute("aria-selected", String(i === current));
      tab.classList.toggle("active", i === current);
      tab.classList.toggle("done", i < current);
    });
    $("[data-step-back]", form).disabled = current === 0;
    $("[data-step-next]", form).hidden = current === steps.length - 1;
    $("[data-step-submit]", form).hidden = current !== steps.length - 1;
    $("[data-step-counter]", form).textContent = `Step ${current + 1} of ${steps.length}`;
  }

  function setBar(name, share, note) {
    const bar = $(`[data-sum-bar="${name}"] .progress-bar`, form);
    const pct = Math.max(0, Math.min(100, Math.round(share * 100)));
    bar.style.width = `${pct}%`;
    bar.className = `progress-bar ${share > 1 ? "kv-bg-red" : share > 0.8 ? "kv-bg-amber" : "kv-bg-blue"}`;
    $(`[data-sum="${name}-note"]`, form).textContent = note;
  }

  function summarize() {
    const host = pickedHost();
    const els = form.elements;
    const set = (key, text) => { $(`[data-sum="${key}"]`, form).textContent = text || "—"; };
    set("name", els.name.value.trim());
    set("host", host ? `${host.name}${els.host.value === "auto" ? " (picked for you)" : ""}` : "no host");
    const memoryMib = Number(els.memory_mib.value) || 0;
    set("size", `${els.vcpus.value || "?"} vCPU · ${memoryMib} MiB`);
    const selected = (select) => (select && select.value && select.selectedOptions[0] ? select.selectedOptions[0].textContent : "not chosen yet");
    const sources = { iso: `ISO: ${selected(els.iso)}`, template: `template ${selected(els.template)} (${els.clone.value})`,
      cloud: `cloud image ${selected(els.image)} (${els.clone.value})`, network: "the network (PXE)", kernel: "a kernel on the host" };
    set("source", sources[sourceType()] || "");
    const size = Number(els.disk_size_gib.value) || 0;
    const size2 = Number(els.disk2_size_gib.value) || 0;
    set("disks", `${size} GiB ${els.disk_format.value}, ${els.disk_allocation.value}${size2 ? ` + ${size2} GiB` : ""}`);
    set("network", els.network && els.network.value ? selected(els.network) : "none");
    if (host && host.free_kib) {
      setBar("memory", (memoryMib * 1024) / host.free_kib, `${memoryMib} MiB of ${humanSizeKiB(host.free_kib)} free on ${host.name}`);
    } else setBar("memory", 0, "The host has not reported its free memory yet.");
    const pool = choices.pools.find((p) => String(p.id) === els.disk_pool.value);
    const bytes = (size + size2) * 1024 ** 3;
    if (pool) {
      const thin = els.disk_allocation.value === "thin";
      setBar("disk", bytes / Math.max(pool.available, 1), `${gib(bytes)} of ${gib(pool.available)} free in ${pool.name}${thin ? "; thin disks take space only as data is written" : ""}`);
      $("[data-pool-space]", form).textContent = `${gib(pool.available)} free in ${pool.name}.`;
    } else setBar("disk", 0, "Choose a pool.");
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "host") followHost();
    if (event.target.name === "source_type") showSourcePanels();
    summarize();
  });
  form.addEventListener("input", summarize);
  $("[data-step-next]", form).addEventListener("click", () => { if (stepValid(current)) show(current + 1); });
  $("[data-step-back]", form).addEventListener("click", () => show(current - 1));
  $$("[data-step-to]", form).forEach((tab, index) => tab.addEventListener("click", () => {
    for (let i = current; i < index; i += 1) if (!stepValid(i)) return show(i);
    show(index);
  }));
  form.addEventListener("submit", (event) => {
    for (let i = 0; i < steps.length; i += 1) {
      if (!stepValid(i)) { event.preventDefault(); show(i); return; }
    }
    $("[data-step-submit]", form).disabled = true;
  });

  followHost();
  showSourcePanels();
  summarize();
  // After a refused submit, open the first step that holds a marked field.
  const invalid = $(".is-invalid", form);
  show(invalid ? steps.indexOf(invalid.closest("[data-step]").dataset.step) : 0);
}
