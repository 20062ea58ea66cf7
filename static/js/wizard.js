// The create-VM wizard: one form in five steps. Each step is checked before the next one opens;
// the choices that depend on the host follow it; the summary shows what the VM will take.
// Disks and NICs are rows the user adds and removes, up to the server's limits. A row's fields are
// named after its position (disk_size_gib, disk2_size_gib, ...), as vms/wizard.py reads them back.
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
    // A NIC row may also be "no network interface": the server skips it, as it skips an empty disk row.
    if (select.dataset.none) options.unshift(h("option", { value: "" }, select.dataset.none));
    if (!items.length && !select.dataset.none) options.unshift(h("option", { value: "" }, select.dataset.empty));
    select.replaceChildren(...options);
    if (options.some((option) => option.value === String(wanted))) select.value = String(wanted);
    else if (kind === "pools" || kind === "networks") {
      // Like libvirt's own tools, prefer the pool or network called "default".
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

  const rowsOf = (kind) => $$(`[data-rows="${kind}"] > [data-row]`, form);
  const rowField = (row, name) => $(`[data-row-field="${name}"]`, row);
  const hostHasNetworks = () => {
    const host = pickedHost();
    return Boolean(host && choices.networks.some((network) => network.host === host.id));
  };

  /** Name, id and title each row after its position, and offer "Add" while under the limit. */
  function renumber(kind) {
    const rows = rowsOf(kind);
    rows.forEach((row, index) => {
      const suffix = index ? String(index + 1) : "";
      row.setAttribute("aria-label", `${row.dataset.label} ${index + 1}`);
      for (const el of $$("[data-row-field]", row)) {
        el.name = `${kind}${suffix}_${el.dataset.rowField}`;
        el.id = `${el.dataset.id}${suffix}`;
      }
      for (const label of $$("label[data-for]", row)) label.htmlFor = `${label.dataset.for}${suffix}`;
      for (const el of $$("[data-row-title]", row)) el.textContent = `${el.dataset.rowTitle} ${index + 1}`;
      for (const el of $$("[data-row-remove-label]", row)) el.textContent = `${el.dataset.rowRemoveLabel} ${index + 1}`;
      for (const button of $$("[data-row-remove]", row)) button.hidden = false;
    });
    const limit = choices.limits[kind];
    const add = $(`[data-row-add="${kind}"]`, form);
    add.hidden = false;
    add.disabled = rows.length >= limit || (kind === "nic" && !hostHasNetworks());
    const noun = kind === "disk" ? "disks" : "NICs";
    $(`[data-row-count="${kind}"]`, form).textContent =
      kind === "nic" && !hostHasNetworks() ? "This host has no libvirt network: the VM gets no NIC."
      : rows.length >= limit ? `${limit} ${noun} is the most a VM gets here.`
      : `${rows.length} of at most ${limit} ${noun}.`;
  }

  function addRow(kind) {
    const row = $(`[data-row-template="${kind}"]`, form).content.firstElementChild.cloneNode(true);
    $(`[data-rows="${kind}"]`, form).append(row);
    renumber(kind);
    $$("select[data-by-host]", row).forEach((select) => fillByHost(select, pickedHost()));
    summarize();
    $("[data-row-field]", row).focus();
  }

  function removeRow(row) {
    const kind = row.dataset.row;
    row.remove();
    renumber(kind);
    summarize();
    $(`[data-row-add="${kind}"]`, form).focus();
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
    const disks = rowsOf("disk").map((row) => ({
      gib: Number(rowField(row, "size_gib").value) || 0,
      pool: rowField(row, "pool").value,
      thin: rowField(row, "allocation").value === "thin",
      what: `${rowField(row, "format").value}, ${rowField(row, "allocation").value}`,
    }));
    set("disks", disks.length === 1 ? `${disks[0].gib} GiB ${disks[0].what}`
      : disks.length ? `${disks.length} disks: ${disks.map((disk) => disk.gib).join(" + ")} GiB` : "none");
    const nics = rowsOf("nic").map((row) => rowField(row, "network")).filter((select) => !select.disabled && select.value);
    set("network", nics.length ? nics.map(selected).join(", ") : "none");
    if (host && host.free_kib) {
      setBar("memory", (memoryMib * 1024) / host.free_kib, `${memoryMib} MiB of ${humanSizeKiB(host.free_kib)} free on ${host.name}`);
    } else setBar("memory", 0, "The host has not reported its free memory yet.");
    summarizePools(disks);
  }

  /** The bar shows the pool the disks fill the most. */
  function summarizePools(disks) {
    const poolById = (id) => choices.pools.find((p) => String(p.id) === id);
    const used = new Map();
    for (const disk of disks) {
      const pool = poolById(disk.pool);
      if (!pool) continue;
      const entry = used.get(pool) || { bytes: 0, thin: true };
      used.set(pool, { bytes: entry.bytes + disk.gib * 1024 ** 3, thin: entry.thin && disk.thin });
    }
    const share = ([pool, entry]) => entry.bytes / Math.max(pool.available, 1);
    const fullest = [...used].sort((a, b) => share(b) - share(a))[0];
    if (!fullest) {
      setBar("disk", 0, disks.length ? "Choose a pool." : "No disk.");
      return;
    }
    const [pool, entry] = fullest;
    const thin = entry.thin ? "; thin disks take space only as data is written" : "";
    setBar("disk", share(fullest), `${gib(entry.bytes)} of ${gib(pool.available)} free in ${pool.name}${thin}`);
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "host") {
      followHost();
      renumber("nic");
    }
    if (event.target.name === "source_type") showSourcePanels();
    summarize();
  });
  form.addEventListener("input", summarize);
  form.addEventListener("click", (event) => {
    const remove = event.target.closest("[data-row-remove]");
    if (remove) removeRow(remove.closest("[data-row]"));
    const add = event.target.closest("[data-row-add]");
    if (add) addRow(add.dataset.rowAdd);
  });
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
  renumber("disk");
  renumber("nic");
  showSourcePanels();
  summarize();
  // After a refused submit, open the first step that holds a marked field or message.
  const invalid = $("[data-step] .is-invalid, [data-step] .invalid-feedback", form);
  show(invalid ? steps.indexOf(invalid.closest("[data-step]").dataset.step) : 0);
}
