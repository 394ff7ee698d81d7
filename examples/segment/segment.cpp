// segment: the command-line segmenter (usage: segment --help). Started as `sluice_demo` (the
// symlink that tools/run-demo.sh runs) it is the README's main job: the shipped sample images
// with the shipped demo model on the CPU, the polygons found per image, and the throughput end to
// end and network only. One program, so the heavy translation unit compiles once.
#include <filesystem>
#include <string_view>

#include "segment_app.hpp"

int main(int argc, char** argv) {
  segment_app::Options o;
  if (argc > 0 && std::filesystem::path(argv[0]).filename() == "sluice_demo") {
    const std::filesystem::path data = SLUICE_EXAMPLES_DATA_DIR;
    o.model_json = data / "demo" / "model.json";
    o.paths = {data / "samples"};
    o.list_polygons = true;
    o.bench_network = true;
    o.repeat = 32;  // six samples are too few to time: 192 images (a few seconds) steady the throughput line
  }
  return segment_app::main_with_defaults(argc, argv, o);
}
