// Runs before first paint (a classic, blocking script in <head>): apply the remembered theme, or
// follow the system's light/dark preference, so a dark page never flashes white.
(function () {
  var KEY = "kvmweb-theme";
  var media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : "auto";
    } catch (e) {
      return "auto";
    }
  }
  function apply() {
    var choice = stored();
    var theme = choice === "auto" ? (media && media.matches ? "dark" : "light") : choice;
    document.documentElement.setAttribute("data-bs-theme", theme);
    document.documentElement.setAttribute("data-theme-choice", choice);
  }
  apply();
  if (media && media.addEventListener) media.addEventListener("change", apply);
  window.kvmwebTheme = {
    KEY: KEY,
    apply: apply,
    choice: stored,
    set: function (choice) {
      try {
        if (choice === "light" || choice === "dark") window.localStorage.setItem(KEY, choice);
        else window.localStorage.removeItem(KEY);
      } catch (e) {
        /* private mode: the choice lasts for this page only */
      }
      apply();
    },
  };
})();
