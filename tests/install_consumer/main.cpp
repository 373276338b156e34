// Compiled against an installed rediskit (or add_subdirectory) by scripts/run.sh.
#include <rediskit/rediskit.hpp>

#include <iostream>

int main() {
  std::cout << "rediskit " << rediskit::version_string << " found by a consumer project\n";
  return 0;
}
