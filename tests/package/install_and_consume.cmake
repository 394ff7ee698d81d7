# Script mode (cmake -P): install -> find_package -> build -> run. Fails on the first step that fails.
foreach(var SLUICE_SOURCE_DIR CONSUMER_SOURCE_DIR WORK_DIR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_and_consume.cmake: ${var} is not set")
  endif()
endforeach()

set(build_dir ${WORK_DIR}/sluice-build)
set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/consumer-build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

set(launcher_arg "")
if(CXX_LAUNCHER)
  set(launcher_arg -DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_LAUNCHER})
endif()

function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${name}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

run_step("configure sluice" ${CMAKE_COMMAND} -S ${SLUICE_SOURCE_DIR} -B ${build_dir}
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF -DSLUICE_BUILD_EXAMPLES=OFF
  -DSLUICE_WITH_CUDA=OFF -DSLUICE_WITH_VISION=OFF -DSLUICE_BUILD_FUZZERS=OFF)
run_step("install sluice" ${CMAKE_COMMAND} --install ${build_dir})

if(NOT EXISTS ${prefix}/include/sluice/batching/batcher.hpp)
  message(FATAL_ERROR "the install lacks include/sluice/batching/batcher.hpp")
endif()
file(GLOB_RECURSE config_files ${prefix}/*/sluiceConfig.cmake)
if(NOT config_files)
  message(FATAL_ERROR "the install lacks sluiceConfig.cmake")
endif()

run_step("configure consumer" ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${consumer_build}
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} ${launcher_arg})
run_step("build consumer" ${CMAKE_COMMAND} --build ${consumer_build})
run_step("run consumer" ${consumer_build}/sluice_consumer)
if(NOT step_output MATCHES "sluice consumer: ok")
  message(FATAL_ERROR "the consumer did not report success:\n${step_output}")
endif()
