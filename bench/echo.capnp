# The schema the hand-written code in capnp_echo.go implements. It is not
# compiled: the bench module keeps no code generator in its build, so
# capnp_echo.go spells out by hand what capnpc-go would generate from it.
@0xc7d1f3a5b9e2d481;

interface Echo @0xe8a1c4d7f2b35a01 {
  echo @0 (data :Data) -> (data :Data);
  sub @1 () -> (echo :Echo);
  callback @2 (cb :Callback, data :Data) -> (data :Data);
}

interface Callback @0xe8a1c4d7f2b35a02 {
  call @0 (data :Data) -> (data :Data);
}
