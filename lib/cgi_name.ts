/** @module Header names as CGI-style servers (CGI, WSGI, Rack, PHP) file them. */

const CGI_SEPARATORS = /[._]/g;

/**
 * A header name as CGI-style servers file it, with `_` and `.` read as `-`: CGI, WSGI and Rack
 * read `x_vestibule_region` as `HTTP_X_VESTIBULE_REGION`, and PHP turns a `.` into `_` when it
 * stores `$_SERVER` names, so behind Caddy's FastCGI or FrankenPHP, which pass such headers on,
 * `x.vestibule.region` is that variable too.
 */
export function cgiName(name: string): string {
  return name.replace(CGI_SEPARATORS, "-");
}

/** Whether `name` holds a character {@linkcode cgiName} reads as `-`. */
export function hasCgiSeparator(name: string): boolean {
  return name.includes("_") || name.includes(".");
}
