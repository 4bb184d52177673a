// Calendar arithmetic without the C library's time zone state.
#ifndef SEALPOST_BASE_CIVIL_TIME_H_
#define SEALPOST_BASE_CIVIL_TIME_H_

#include <cstdint>

namespace sealpost {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// algorithm). REQUIRES: 1 <= m <= 12, 1 <= d <= 31.
inline int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace sealpost

#endif  // SEALPOST_BASE_CIVIL_TIME_H_
