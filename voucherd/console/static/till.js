// A phone's camera as a scanner, where the browser has BarcodeDetector; a USB scanner just
// types into the code field, so nothing is needed for it.
(function () {
  function setUp() {
    var button = document.getElementById("scan");
    var video = document.getElementById("camera");
    if (!button || !video || !("BarcodeDetector" in window) || !navigator.mediaDevices) return;
    button.classList.remove("hidden");
    button.addEventListener("click", function () {
      var detector = new window.BarcodeDetector();
      navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
        video.srcObject = stream;
        video.classList.remove("hidden");
        video.play();
        function stop() { stream.getTracks().forEach(function (t) { t.stop(); }); video.classList.add("hidden"); }
        function look() {
          detector.detect(video).then(function (found) {
            if (found.length) {
              stop();
              document.getElementById("f-code").value = found[0].rawValue;
              document.getElementById("check").click();
            } else { requestAnimationFrame(look); }
          }).catch(stop);
        }
        look();
      }).catch(function () { button.classList.add("hidden"); });
    });
  }
  document.addEventListener("DOMContentLoaded", setUp);
  document.addEventListener("htmx:afterSettle", setUp);
})();
