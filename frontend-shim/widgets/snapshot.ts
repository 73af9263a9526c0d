// Saving a classic Notebook keeps each widget's LAST value: before the notebook is saved, the static
// part of every widget output is replaced by a snapshot of its live view (current values written into
// attributes, controls disabled, mount markers removed so the views mount again after a reload).

const CONTROLS = "input, select, textarea, option, button";

/** Static HTML of a live view: what it shows now, inert. */
export function staticSnapshot(root: HTMLElement): string {
  const clone = root.cloneNode(true) as HTMLElement;
  const live = [...root.querySelectorAll<HTMLElement>(CONTROLS)];
  const copies = [...clone.querySelectorAll<HTMLElement>(CONTROLS)];
  live.forEach((from, i) => {
    const to = copies[i];
    if (!to) return;
    if (from instanceof HTMLInputElement) {
      if (from.type === "checkbox" || from.type === "radio") to.toggleAttribute("checked", from.checked);
      else if (from.type !== "file") to.setAttribute("value", from.value);
      to.setAttribute("disabled", "");
    } else if (from instanceof HTMLTextAreaElement) {
      to.textContent = from.value;
      to.setAttribute("disabled", "");
    } else if (from instanceof HTMLOptionElement) {
      to.toggleAttribute("selected", from.selected);
    } else to.setAttribute("disabled", "");
  });
  for (const el of [clone, ...clone.querySelectorAll<HTMLElement>("[data-tsnb-mounted], [data-tsnb-disconnected]")]) {
    el.removeAttribute("data-tsnb-mounted");
    el.removeAttribute("data-tsnb-disconnected");
    el.removeAttribute("aria-disabled");
    el.removeAttribute("title");
  }
  // Custom controls (the range slider's thumbs, the tab bar's tabs) are inert in the copy too.
  for (const el of clone.querySelectorAll<HTMLElement>("[tabindex]")) {
    el.removeAttribute("tabindex");
    if (el.getAttribute("role") === "slider") el.setAttribute("aria-disabled", "true");
  }
  return clone.innerHTML;
}

interface ClassicOutput {
  data?: { [mime: string]: unknown };
}

interface ClassicCell {
  output_area?: { element: ArrayLike<HTMLElement> | HTMLElement; outputs: ClassicOutput[] };
}

export interface ClassicNotebook {
  get_cells(): ClassicCell[];
}

/** Rewrites the saved HTML of every widget output of the notebook to its live view's snapshot. */
export function snapshotOutputs(notebook: ClassicNotebook): number {
  let rewritten = 0;
  for (const cell of notebook.get_cells()) {
    const area = cell.output_area;
    if (!area) continue;
    const host = area.element instanceof HTMLElement ? area.element : area.element[0];
    if (!host) continue;
    const slots = [...host.children].filter((c) => c.classList.contains("output_area"));
    area.outputs.forEach((output, i) => {
      const html = output.data?.["text/html"];
      const slot = slots[i];
      if (typeof html !== "string" || !slot) return;
      const root = slot.querySelector<HTMLElement>("[data-tsnb-widget][data-tsnb-mounted]");
      const id = root?.dataset.tsnbWidget;
      if (!root || !id) return;
      const head = `<div class="tsnb-widget" data-tsnb-widget="${id}">`;
      const scriptAt = html.lastIndexOf("<script>");
      if (!html.startsWith(head) || scriptAt < 0) return;
      output.data!["text/html"] = `${head}${staticSnapshot(root)}</div>${html.slice(scriptAt)}`;
      rewritten++;
    });
  }
  return rewritten;
}
