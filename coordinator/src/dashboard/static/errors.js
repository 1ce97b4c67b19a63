// Loaded first on every dashboard page: any script error, failed script or rejected promise is
// shown in the page's banner and kept on <html data-error>, so neither people nor tests miss one.
(function () {
  'use strict';
  function show(text) {
    document.documentElement.dataset.error = text;
    var banner = document.getElementById('script-error');
    if (banner) {
      banner.hidden = false;
      banner.textContent = 'Script error: ' + text;
    } else {
      document.addEventListener('DOMContentLoaded', function () { show(text); });
    }
  }
  window.addEventListener('error', function (e) {
    if (e.target && e.target !== window && (e.target.src || e.target.href)) {
      show('could not load ' + (e.target.src || e.target.href));
    } else {
      show((e.message || 'error') + (e.filename ? ' (' + e.filename + ':' + e.lineno + ')' : ''));
    }
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    show('unhandled rejection: ' + (e.reason && e.reason.message ? e.reason.message : String(e.reason)));
  });
  window.shoalError = show;
})();
