# How every target of this project is set up, in one place.

# xtgrad_warnings(target): our own code compiles without warnings under -Wall -Wextra.
function(xtgrad_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
endfunction()

# xtgrad_component(name sources...): one directory of the library (autograd, io, layers,
# optim) as its own static library xtgrad_<name>, exported as xtgrad::<name>. Its public
# headers are DIR/include; its private headers (DIR/src) are seen by its own sources only,
# so a layer that includes autograd's private headers does not compile.
function(xtgrad_component name)
  add_library(xtgrad_${name} STATIC ${ARGN})
  set_target_properties(xtgrad_${name} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(xtgrad_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(xtgrad_${name} PUBLIC cxx_std_17)
  xtgrad_warnings(xtgrad_${name})
  install(TARGETS xtgrad_${name} EXPORT xtgradTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY include/xtgrad DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()
