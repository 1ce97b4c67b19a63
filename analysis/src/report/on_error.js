// Any uncaught error, in the check below or anywhere later, marks the page as broken; the first
// message is kept for whoever reads the DOM.
window.onerror = function (message) {
  var root = document.documentElement;
  root.dataset.report = "error";
  if (!root.dataset.error) root.dataset.error = String(message);
};
