# Runs COMMAND (a ;-list) and passes only when it exits non-zero within TIMEOUT seconds
# with output (stdout and stderr together) matching every regular expression in EXPECT
# (a ;-list). For the fault tests, where ctest's PASS_REGULAR_EXPRESSION alone would
# ignore the exit code:
#   cmake -DCOMMAND="mpiexec;-np;2;prog" -DEXPECT="rank 1" -DTIMEOUT=25 -P expect_failure.cmake
# On a timeout execute_process kills the command's process tree, so no rank is left.
list(REMOVE_ITEM COMMAND "")  # empty flag lists leave empty items
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT ${TIMEOUT})
message("${out}")
if(rc MATCHES "timeout|terminated")
  message(FATAL_ERROR "still running after ${TIMEOUT} s (${rc}): a hang")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "exit code 0: expected a failure")
endif()
foreach(regex IN LISTS EXPECT)
  if(NOT out MATCHES "${regex}")
    message(FATAL_ERROR "exit code ${rc}, but the output does not match '${regex}'")
  endif()
endforeach()
message("exit code ${rc} and every expected message: ok")
