// The errno a Status came from survives Annotate and comes out of
// StatusToErrno, even where its canonical code stands for another errno.

#include "lib/base/status.h"

#include <cerrno>

#include "gtest/gtest.h"

namespace ckpt {
namespace {

TEST(StatusTest, ErrnoErrorCarriesTheRealErrno) {
  // EPIPE, EBUSY and ENOSPC share their codes with other errnos.
  for (int err : {EPIPE, EBUSY, ENOSPC, EBADF, EMFILE, EINTR}) {
    absl::Status st = ErrnoError(err, "write fd ", 3);
    EXPECT_EQ(st.code(), absl::ErrnoToStatusCode(err)) << err;
    EXPECT_EQ(StatusToErrno(st), err) << st;
    EXPECT_NE(st.message().find(strerror(err)), absl::string_view::npos) << st;
  }
}

TEST(StatusTest, AnnotateKeepsTheErrnoAndTheCode) {
  absl::Status st = Annotate(Annotate(ErrnoError(EPIPE, "writing the image"), "task 12"), "dump");
  EXPECT_EQ(st.code(), absl::ErrnoToStatusCode(EPIPE));
  EXPECT_EQ(StatusToErrno(st), EPIPE);
  EXPECT_EQ(st.message().substr(0, 15), "dump: task 12: ");
}

TEST(StatusTest, AnnotateKeepsOtherPayloads) {
  absl::Status st = absl::InternalError("x");
  st.SetPayload("type.example/other", absl::Cord("kept"));
  absl::Status annotated = Annotate(st, "context");
  ASSERT_TRUE(annotated.GetPayload("type.example/other").has_value());
  EXPECT_EQ(*annotated.GetPayload("type.example/other"), "kept");
}

TEST(StatusTest, AnnotateOfOkIsOk) { EXPECT_TRUE(Annotate(absl::OkStatus(), "context").ok()); }

TEST(StatusTest, WithMessageKeepsTheErrno) {
  absl::Status st = WithMessage(ErrnoError(ENOSPC, "write"), "write; the tree was resumed");
  EXPECT_EQ(st.message(), "write; the tree was resumed");
  EXPECT_EQ(StatusToErrno(st), ENOSPC);
}

TEST(StatusTest, WithErrnoMarksAnyCode) {
  absl::Status st = WithErrno(absl::UnavailableError("the reader went away"), EPIPE);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusToErrno(st), EPIPE);
  EXPECT_TRUE(WithErrno(absl::OkStatus(), EPIPE).ok());
  EXPECT_FALSE(WithErrno(absl::InternalError("x"), 0).GetPayload(kErrnoPayloadUrl).has_value());
}

TEST(StatusTest, WithoutAPayloadTheCodeDecides) {
  EXPECT_EQ(StatusToErrno(absl::OkStatus()), 0);
  EXPECT_EQ(StatusToErrno(absl::InvalidArgumentError("x")), EINVAL);
  EXPECT_EQ(StatusToErrno(absl::NotFoundError("x")), ENOENT);
  EXPECT_EQ(StatusToErrno(absl::FailedPreconditionError("x")), EBUSY);
  EXPECT_EQ(StatusToErrno(absl::CancelledError("x")), ECANCELED);
  EXPECT_EQ(StatusToErrno(absl::InternalError("x")), EIO);
  EXPECT_EQ(StatusToErrno(absl::UnknownError("x")), EIO);
}

TEST(StatusTest, AMalformedPayloadIsIgnored) {
  for (const char* bad : {"", "pipe", "-32", "0", "99999"}) {
    absl::Status st = absl::ResourceExhaustedError("x");
    st.SetPayload(kErrnoPayloadUrl, absl::Cord(bad));
    EXPECT_EQ(StatusToErrno(st), ENOSPC) << bad;
  }
}

}  // namespace
}  // namespace ckpt
