// Kept in step with package.json by hand: the bundle must not read package.json at run time (global installs
// may lay files out differently).
export const TSNB_VERSION = "0.1.0";
