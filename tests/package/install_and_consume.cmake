# Script mode (cmake -P): install sluice to a fresh prefix, then configure, build and run consumer
# projects against it -- batching (core + batching), networks (cpu + models), vision (cpu + vision,
# the demo model on sample images), grpc (the gRPC transport, where gRPC is installed) -- the batching consumer against the build tree, and the networks
# consumer once more with sluice pulled in by add_subdirectory. Fails on the first step that fails.
foreach(var SLUICE_SOURCE_DIR CONSUMERS_DIR WORK_DIR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_and_consume.cmake: ${var} is not set")
  endif()
endforeach()

set(build_dir ${WORK_DIR}/sluice-build)
set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

set(common_args -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
if(CXX_LAUNCHER)
  list(APPEND common_args -DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_LAUNCHER})
endif()

function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${name}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# consume(<name> <consumer folder> CONFIGURE <extra configure args>... RUN <program args>...)
function(consume name folder)
  cmake_parse_arguments(C "" "" "CONFIGURE;RUN" ${ARGN})
  set(bdir ${WORK_DIR}/consumer-${name})
  run_step("configure consumer ${name}" ${CMAKE_COMMAND} -S ${CONSUMERS_DIR}/${folder} -B ${bdir} ${common_args}
    ${C_CONFIGURE})
  run_step("build consumer ${name}" ${CMAKE_COMMAND} --build ${bdir})
  run_step("run consumer ${name}" ${bdir}/sluice_consumer ${C_RUN})
  if(NOT step_output MATCHES "sluice consumer: ok")
    message(FATAL_ERROR "consumer ${name} did not report success:\n${step_output}")
  endif()
  message(STATUS "${name}: ${step_output}")
endfunction()

run_step("configure sluice" ${CMAKE_COMMAND} -S ${SLUICE_SOURCE_DIR} -B ${build_dir} ${common_args}
  -DCMAKE_INSTALL_PREFIX=${prefix} -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF
  -DSLUICE_BUILD_EXAMPLES=OFF -DSLUICE_WITH_CUDA=OFF -DSLUICE_BUILD_FUZZERS=OFF)
# Only the compiled layers build here (the gRPC transport where gRPC is installed; CUDA is off).
run_step("build sluice" ${CMAKE_COMMAND} --build ${build_dir} --parallel 2)
run_step("install sluice" ${CMAKE_COMMAND} --install ${build_dir})
foreach(file include/sluice/batching/batcher.hpp include/sluice/backends/cpu/cpu_backend.hpp
             include/sluice/vision/segmenter.hpp lib/cmake/sluice/sluiceConfig.cmake
             lib/cmake/sluice/sluiceTargets.cmake)
  if(NOT EXISTS ${prefix}/${file})
    message(FATAL_ERROR "the install lacks ${file}")
  endif()
endforeach()

set(demo ${SLUICE_SOURCE_DIR}/examples/data/demo)
set(samples ${SLUICE_SOURCE_DIR}/examples/data/samples)
consume(batching batching CONFIGURE -DCMAKE_PREFIX_PATH=${prefix})
consume(networks networks CONFIGURE -DCMAKE_PREFIX_PATH=${prefix} RUN ${demo}/cbam_resunet.safetensors)
consume(vision vision CONFIGURE -DCMAKE_PREFIX_PATH=${prefix}
  RUN ${demo}/model.json ${samples}/spheroids_0000.png ${samples}/spheroids_0001.png)
# The gRPC transport, where this machine has gRPC (the sluice build above switched it on by itself).
if(EXISTS ${prefix}/include/sluice/grpc/grpc_server.hpp)
  consume(grpc grpc CONFIGURE -DCMAKE_PREFIX_PATH=${prefix})
else()
  message(STATUS "grpc consumer: skipped (sluice was built without the gRPC transport)")
endif()
# A component the package was built without is refused by find_package, with the reason.
execute_process(COMMAND ${CMAKE_COMMAND} -S ${CONSUMERS_DIR}/missing_component -B ${WORK_DIR}/consumer-missing
  ${common_args} -DCMAKE_PREFIX_PATH=${prefix} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT "${out}${err}" MATCHES "without the 'cuda' layer")
  message(FATAL_ERROR "find_package(sluice COMPONENTS cuda) of a CPU-only install did not fail as it should:\n${out}\n${err}")
endif()
message(STATUS "missing component refused: ok")
# The build tree is a package too (export()): a consumer pointed at it with sluice_DIR.
consume(build_tree batching CONFIGURE -Dsluice_DIR=${build_dir})
consume(subdirectory networks CONFIGURE -DSLUICE_SOURCE_DIR=${SLUICE_SOURCE_DIR} RUN ${demo}/cbam_resunet.safetensors)
