// The widget views' stylesheet. Colours come from JupyterLab's CSS variables, so the views follow the
// page's theme (light or dark) there: first ipywidgets' own --jp-widgets-* names (set when
// jupyterlab_widgets is installed), then JupyterLab's core ones, then literal colours that match
// Notebook 6, which defines no --jp variables at all.

const FONT = "var(--jp-widgets-font-size, var(--jp-ui-font-size1, 13px))";
const TEXT = "var(--jp-widgets-color, var(--jp-ui-font-color1, #212121))";
const LABEL = "var(--jp-widgets-label-color, var(--jp-ui-font-color1, #212121))";
const INPUT_BG = "var(--jp-widgets-input-background-color, var(--jp-layout-color1, #fff))";
const INPUT_TEXT = "var(--jp-widgets-input-color, var(--jp-ui-font-color1, #212121))";
const BORDER = "var(--jp-widgets-input-border-color, var(--jp-border-color1, #bdbdbd))";
const FOCUS = "var(--jp-widgets-input-focus-border-color, var(--jp-brand-color1, #1976d2))";
const BUTTON_BG = "var(--jp-layout-color2, #eeeeee)";
const BUTTON_HOVER = "var(--jp-layout-color3, #e0e0e0)";
const ACCENT = "var(--jp-brand-color1, #1976d2)";
const INVERSE = "var(--jp-ui-inverse-font-color1, #fff)";
const DISABLED = "var(--jp-widgets-disabled-opacity, 0.6)";
const TRACK = "var(--jp-widgets-slider-track-color, var(--jp-layout-color3, #bdbdbd))";
const HANDLE_BG = "var(--jp-widgets-slider-handle-background-color, var(--jp-layout-color1, #fff))";
const HANDLE_BORDER = "var(--jp-widgets-slider-handle-border-color, var(--jp-border-color1, #9e9e9e))";

export const WIDGET_CSS = `
.tsnb-w-view.lm-mod-hidden, .tsnb-w-view [hidden] { display: none !important; }
.tsnb-w { display: flex; align-items: center; gap: 8px; margin: 2px 0; font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: ${FONT}; color: ${TEXT}; }
.tsnb-w-label { min-width: 0; margin: 0; font-weight: normal; color: ${LABEL}; }
.tsnb-w input[type=checkbox], .tsnb-w input[type=radio] { margin: 0 4px 0 0; }
.tsnb-w-button { padding: 4px 12px; border: 1px solid ${BORDER}; border-radius: 2px; background: ${BUTTON_BG}; color: ${TEXT}; font: inherit; cursor: pointer; }
.tsnb-w-button:hover:not(:disabled) { background: ${BUTTON_HOVER}; }
.tsnb-w :focus-visible { outline: 2px solid ${FOCUS}; outline-offset: 1px; }
.tsnb-w-button[aria-pressed="true"] { background: ${ACCENT}; color: ${INVERSE}; }
.tsnb-w-button[data-style="primary"] { background: ${ACCENT}; color: ${INVERSE}; }
.tsnb-w-button[data-style="success"] { background: var(--jp-success-color1, #388e3c); color: ${INVERSE}; }
.tsnb-w-button[data-style="warning"] { background: var(--jp-warn-color1, #f57c00); color: ${INVERSE}; }
.tsnb-w-button[data-style="danger"] { background: var(--jp-error-color1, #d32f2f); color: ${INVERSE}; }
.tsnb-w-button:disabled { opacity: ${DISABLED}; cursor: default; }
.tsnb-w input.tsnb-w-slider { display: inline-block; width: 200px; accent-color: ${ACCENT}; }
.tsnb-w-readout { min-width: 3em; font-variant-numeric: tabular-nums; color: ${TEXT}; }
.tsnb-w input[type=text], .tsnb-w input[type=number], .tsnb-w textarea, .tsnb-w select { border: 1px solid ${BORDER}; border-radius: 0; background: ${INPUT_BG}; color: ${INPUT_TEXT}; padding: 2px 4px; font: inherit; }
.tsnb-w input:disabled, .tsnb-w textarea:disabled, .tsnb-w select:disabled { opacity: ${DISABLED}; }
.tsnb-w progress { accent-color: ${ACCENT}; }
.tsnb-w-view[data-tsnb-disconnected] > .tsnb-w { opacity: 0.55; pointer-events: none; }
.tsnb-w-range { position: relative; width: 200px; margin: 0 8px; height: 18px; touch-action: none; cursor: pointer; }
.tsnb-w-range-track { position: absolute; left: 0; right: 0; top: 7px; height: 4px; border-radius: 2px; background: ${TRACK}; }
.tsnb-w-range-fill { position: absolute; top: 7px; height: 4px; border-radius: 2px; background: ${ACCENT}; }
.tsnb-w-thumb { position: absolute; top: 1px; width: 16px; height: 16px; margin-left: -8px; box-sizing: border-box; border-radius: 50%; border: 1px solid ${HANDLE_BORDER}; background: ${HANDLE_BG}; }
.tsnb-w-thumb:focus-visible { outline: 2px solid ${FOCUS}; outline-offset: 1px; }
.tsnb-w-range[aria-disabled="true"] { opacity: ${DISABLED}; cursor: default; }
.tsnb-w-kind-tabs, .tsnb-w-kind-accordion { display: flex; flex-direction: column; align-items: stretch; }
.tsnb-w-kind-tabs > .lm-TabBar { display: flex; border-bottom: 1px solid ${BORDER}; }
/* !important: Notebook 6 indents and spaces every list inside an output (.rendered_html ul). */
.tsnb-w-kind-tabs ul.lm-TabBar-content { display: flex; flex: 1 1 auto; margin: 0 !important; padding: 0 !important; list-style: none; gap: 2px; }
.tsnb-w-kind-tabs li.lm-TabBar-tab { margin: 0 !important; }
.tsnb-w-kind-tabs li.lm-TabBar-tab { display: flex; padding: 4px 12px; border: 1px solid ${BORDER}; border-bottom: none; background: ${BUTTON_BG}; color: ${TEXT}; cursor: pointer; user-select: none; }
.tsnb-w-kind-tabs li.lm-TabBar-tab.lm-mod-current { background: ${INPUT_BG}; font-weight: 600; }
.tsnb-w-kind-tabs .lm-TabBar-tabIcon, .tsnb-w-kind-tabs .lm-TabBar-tabCloseIcon, .tsnb-w-kind-tabs .lm-TabBar-addButton { display: none; }
.tsnb-w-panel { padding: 4px; }
.tsnb-w-kind-accordion > .tsnb-w-tab { text-align: left; }
.tsnb-w-tab[aria-expanded="true"] { background: ${INPUT_BG}; font-weight: 600; }
.tsnb-w-kind-hbox { display: flex; flex-direction: row; flex-wrap: wrap; gap: 4px; }
.tsnb-w-kind-vbox { display: flex; flex-direction: column; align-items: stretch; }
.tsnb-w-kind-grid { display: grid; gap: 4px; }
.tsnb-w-file { position: absolute; width: 1px; height: 1px; opacity: 0; }
.tsnb-w-upload-progress { width: 160px; accent-color: ${FOCUS}; }
.tsnb-w-upload-progress[hidden], .tsnb-w-upload-cancel[hidden] { display: none; }
.tsnb-w-upload-status[data-state="error"] { color: var(--jp-error-color1, #d32f2f); }
.tsnb-w-file:focus-visible + .tsnb-w-button { outline: 2px solid ${FOCUS}; }
.tsnb-w-output { display: block; width: 100%; }
.tsnb-w-output pre, .tsnb-w-out { margin: 0; font-family: var(--jp-code-font-family, monospace); white-space: pre-wrap; }
.tsnb-w-radios { display: flex; flex-direction: column; }
`;
