# Install test: installs the built xtgrad into a private prefix, then configures, builds
# and runs a consumer project that finds it with find_package(xtgrad).
#
#   cmake -DBUILD_DIR=<xtgrad build dir> -DCONSUMER_DIR=<tests/install/consumer>
#         -DWORK_DIR=<scratch dir> [-DCXX_COMPILER=...] [-DGENERATOR=...]
#         [-DBUILD_TYPE=Release] [-DCONSUMER_EXE=xtgrad-consumer] -P run_install_test.cmake
#
# Everything lands in WORK_DIR (emptied first): WORK_DIR/prefix and WORK_DIR/build.
cmake_minimum_required(VERSION 3.25)

foreach(var BUILD_DIR CONSUMER_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_install_test.cmake: pass -D${var}=...")
  endif()
endforeach()
if(NOT BUILD_TYPE)
  set(BUILD_TYPE Release)
endif()
if(NOT CONSUMER_EXE)
  set(CONSUMER_EXE xtgrad-consumer)
endif()

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

# Runs one step; any failure stops the test with the step's output.
function(run_step name)
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "install test: ${name} failed (${result}):\n${output}")
  endif()
  message(STATUS "install test: ${name} ok")
  set(step_output "${output}" PARENT_SCOPE)
endfunction()

run_step("cmake --install"
  ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --config ${BUILD_TYPE})

set(configure_args -S ${CONSUMER_DIR} -B ${consumer_build}
  -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
  # Only the private prefix may provide xtgrad (not an xtgrad installed system-wide).
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
if(GENERATOR)
  list(APPEND configure_args -G ${GENERATOR})
endif()
run_step("configure consumer" ${CMAKE_COMMAND} ${configure_args})

# The package must have come from the prefix we just installed into.
file(STRINGS ${consumer_build}/CMakeCache.txt xtgrad_dir_line REGEX "^xtgrad_DIR:")
string(REGEX REPLACE "^xtgrad_DIR:[A-Z]+=" "" xtgrad_dir "${xtgrad_dir_line}")
file(REAL_PATH "${prefix}" real_prefix)
file(REAL_PATH "${xtgrad_dir}" real_xtgrad_dir)
string(FIND "${real_xtgrad_dir}" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "install test: xtgrad was found at '${xtgrad_dir}', not under ${prefix}")
endif()

run_step("build consumer" ${CMAKE_COMMAND} --build ${consumer_build} --config ${BUILD_TYPE})

find_program(consumer_exe ${CONSUMER_EXE}
  PATHS ${consumer_build} ${consumer_build}/${BUILD_TYPE} NO_DEFAULT_PATH NO_CACHE)
if(NOT consumer_exe)
  message(FATAL_ERROR "install test: ${CONSUMER_EXE} was not built in ${consumer_build}")
endif()
run_step("run consumer" ${consumer_exe})
message(STATUS "${step_output}")
