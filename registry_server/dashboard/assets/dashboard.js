// Rows filter as you type in a box marked data-filter (the server does the paging and the search).
document.addEventListener("input", function (event) {
  var box = event.target;
  if (!box.dataset || !box.dataset.filter) return;
  var needle = box.value.toLowerCase();
  document.querySelectorAll(box.dataset.filter + " tbody tr").forEach(function (row) {
    row.style.display = row.textContent.toLowerCase().indexOf(needle) >= 0 ? "" : "none";
  });
});
