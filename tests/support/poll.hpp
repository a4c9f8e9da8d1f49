// Waiting for a condition in tests without a sleep standing in for
// synchronisation: poll it with a deadline.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace rootseal::test {

// Polls `cond` every 20 ms until it holds or `deadline` passes; its last value.
inline bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the poll interval
  }
  return cond();
}

}  // namespace rootseal::test
