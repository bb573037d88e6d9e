// The objects section: each object after the objects it needs, whatever
// order they were met in; needs that go round are refused, naming them;
// links (references that may go round) come after every object; late
// steps are kept in order for the driver.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/image/reader.h"
#include "lib/image/records.h"
#include "lib/image/testing.h"
#include "lib/image/writer.h"
#include "lib/objhash/handlers.h"
#include "lib/objhash/objhash.h"

namespace ckpt::objhash {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Record types of the test's own, far from the real ones.
constexpr uint32_t kHdrNode = 9001;
constexpr uint32_t kHdrPeer = 9002;
constexpr uint32_t kHdrPeerLink = 9003;

struct test_ref {
  uint32_t objref;
  uint32_t other;  // a node: the node it needs first; a peer: its peer
};
constexpr image::FieldSpec kRefFields[] = {
    CKPT_FIELD(test_ref, objref, kUnsigned),
    CKPT_FIELD(test_ref, other, kUnsigned),
};
CKPT_RECORD(kHdrNode, "TEST_NODE", test_ref, kRefFields, 0, kNone);
CKPT_RECORD(kHdrPeer, "TEST_PEER", test_ref, kRefFields, 0, kNone);
CKPT_RECORD(kHdrPeerLink, "TEST_PEER_LINK", test_ref, kRefFields, 0, kNone);

constexpr ObjKind kNode{9001};
constexpr ObjKind kPeer{9002};
const bool kNamed =
    (RegisterObjKindName(kNode, "TEST_NODE"), RegisterObjKindName(kPeer, "TEST_PEER"), true);

// A node needs `other` (0: nothing) made before it.
absl::Status CheckpointNode(CheckpointContext& ctx, const ObjHash::Entry& e) {
  test_ref rec{e.objref, std::any_cast<uint32_t>(e.data)};
  if (rec.other != 0) RETURN_IF_ERROR(ctx.Ensure(rec.other));
  return ctx.writer->AppendStruct(kHdrNode, rec);
}

std::vector<uint32_t>* restored_order = nullptr;

absl::StatusOr<RestoredObject> RestoreNode(RestoreContext& ctx, const image::Record&) {
  test_ref rec;
  RETURN_IF_ERROR(ctx.reader->ReadStruct(&rec, sizeof(rec)));
  if (rec.other != 0) {
    // What it needs is there already.
    RETURN_IF_ERROR(ctx.objects->Get(rec.other, kNode).status());
  }
  restored_order->push_back(rec.objref);
  RestoredObject obj;
  obj.objref = rec.objref;
  return obj;
}

// Peers refer to each other: the object records name nothing, the links
// join them once both exist.
absl::Status CheckpointPeer(CheckpointContext& ctx, const ObjHash::Entry& e) {
  return ctx.writer->AppendStruct(kHdrPeer, test_ref{e.objref, 0});
}

absl::StatusOr<RestoredObject> RestorePeer(RestoreContext& ctx, const image::Record&) {
  test_ref rec;
  RETURN_IF_ERROR(ctx.reader->ReadStruct(&rec, sizeof(rec)));
  RestoredObject obj;
  obj.objref = rec.objref;
  return obj;
}

absl::Status CheckpointPeerLink(CheckpointContext& ctx, const ObjHash::Entry& e) {
  return ctx.writer->AppendStruct(kHdrPeerLink, test_ref{e.objref, std::any_cast<uint32_t>(e.data)});
}

std::vector<std::string>* joined = nullptr;

absl::Status RestorePeerLink(RestoreContext& ctx, const image::Record&) {
  test_ref rec;
  RETURN_IF_ERROR(ctx.reader->ReadStruct(&rec, sizeof(rec)));
  RETURN_IF_ERROR(ctx.objects->Get(rec.objref, kPeer).status());
  RETURN_IF_ERROR(ctx.objects->Get(rec.other, kPeer).status());
  joined->push_back(absl::StrCat(rec.objref, "-", rec.other));
  // Joining the ends inside a task is left for the late pass.
  return ctx.Later([objref = rec.objref](LateContext&) {
    joined->push_back(absl::StrCat("late ", objref));
    return absl::OkStatus();
  });
}

HandlerTable Table() {
  HandlerTable t;
  EXPECT_TRUE(t.Register({kNode, "TEST_NODE", kHdrNode, CheckpointNode, RestoreNode}).ok());
  EXPECT_TRUE(t.Register({kPeer, "TEST_PEER", kHdrPeer, CheckpointPeer, RestorePeer,
                          {kHdrPeerLink, CheckpointPeerLink, RestorePeerLink}})
                  .ok());
  return t;
}

// Writes the objects of `objects` as the dump does; the image on success.
absl::StatusOr<std::string> WriteObjects(const HandlerTable& table, ObjHash& objects,
                                         uint32_t* nr_objects, uint32_t* nr_links) {
  image::MemorySink sink;
  image::Writer w(&sink);
  RETURN_IF_ERROR(w.WriteImageHeader(image::DefaultImageHeader()));
  ObjectWriter out(table, objects);
  *nr_objects = out.nr_objects();
  *nr_links = out.nr_links();
  CheckpointContext ctx{&w, &objects, 0};
  RETURN_IF_ERROR(out.Write(ctx));
  RETURN_IF_ERROR(w.Finish());
  return sink.bytes;
}

absl::Status ReadBack(const HandlerTable& table, const std::string& bytes, uint32_t nr_objects,
                      uint32_t nr_links, RestoreTable& restored, std::vector<LateStep>& late) {
  image::MemorySource source(bytes);
  image::Reader r(&source);
  RETURN_IF_ERROR(r.ReadImageHeader().status());
  RestoreContext ctx;
  ctx.reader = &r;
  ctx.objects = &restored;
  ctx.late = &late;
  RETURN_IF_ERROR(ReadObjects(ctx, table, nr_objects, nr_links));
  return r.ExpectTail();
}

uint32_t AddNode(ObjHash& objects, uint64_t id, uint32_t needs) {
  absl::StatusOr<ObjHash::Found> f = objects.LookupAdd(kNode, Identity::OfInode(1, id), needs);
  EXPECT_TRUE(f.ok());
  return f->objref;
}

TEST(ObjectsTest, EachObjectIsWrittenAfterTheObjectsItNeedsWhateverTheOrderMet) {
  HandlerTable table = Table();
  ObjHash objects;
  // Met in the order 1, 2, 3, 4; 1 needs 3, 3 needs 4, 2 needs nothing.
  ASSERT_EQ(AddNode(objects, 10, 3), 1u);
  ASSERT_EQ(AddNode(objects, 20, 0), 2u);
  ASSERT_EQ(AddNode(objects, 30, 4), 3u);
  ASSERT_EQ(AddNode(objects, 40, 0), 4u);
  uint32_t nr_objects = 0, nr_links = 0;
  absl::StatusOr<std::string> bytes = WriteObjects(table, objects, &nr_objects, &nr_links);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(nr_objects, 4u);
  EXPECT_EQ(nr_links, 0u);
  std::vector<uint32_t> order;
  restored_order = &order;
  RestoreTable restored;
  std::vector<LateStep> late;
  absl::Status st = ReadBack(table, *bytes, nr_objects, nr_links, restored, late);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_THAT(order, ElementsAre(4u, 3u, 1u, 2u));
}

TEST(ObjectsTest, ObjectsThatEachNeedTheOtherFirstAreRefusedNamingThem) {
  HandlerTable table = Table();
  ObjHash objects;
  ASSERT_EQ(AddNode(objects, 10, 2), 1u);
  ASSERT_EQ(AddNode(objects, 20, 3), 2u);
  ASSERT_EQ(AddNode(objects, 30, 1), 3u);
  uint32_t nr_objects = 0, nr_links = 0;
  absl::StatusOr<std::string> bytes = WriteObjects(table, objects, &nr_objects, &nr_links);
  ASSERT_FALSE(bytes.ok());
  EXPECT_THAT(bytes.status().message(),
              HasSubstr("TEST_NODE 1 needs TEST_NODE 2 needs TEST_NODE 3 needs TEST_NODE 1"));
}

TEST(ObjectsTest, PeersThatReferToEachOtherAreJoinedAfterBothExistThenLate) {
  HandlerTable table = Table();
  ObjHash objects;
  // Two pairs of peers, and a node between them.
  auto peer = [&](uint64_t id, uint32_t other) {
    absl::StatusOr<ObjHash::Found> f = objects.LookupAdd(kPeer, Identity::OfInode(2, id), other);
    EXPECT_TRUE(f.ok());
    return f->objref;
  };
  ASSERT_EQ(peer(1, 2), 1u);
  ASSERT_EQ(peer(2, 1), 2u);
  ASSERT_EQ(AddNode(objects, 10, 0), 3u);
  ASSERT_EQ(peer(3, 5), 4u);
  ASSERT_EQ(peer(4, 4), 5u);
  uint32_t nr_objects = 0, nr_links = 0;
  absl::StatusOr<std::string> bytes = WriteObjects(table, objects, &nr_objects, &nr_links);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(nr_objects, 5u);
  EXPECT_EQ(nr_links, 4u);
  std::vector<uint32_t> order;
  restored_order = &order;
  std::vector<std::string> joins;
  joined = &joins;
  RestoreTable restored;
  std::vector<LateStep> late;
  absl::Status st = ReadBack(table, *bytes, nr_objects, nr_links, restored, late);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_THAT(joins, ElementsAre("1-2", "2-1", "4-5", "5-4"));
  ASSERT_EQ(late.size(), 4u);
  LateContext lctx;
  for (LateStep& step : late) ASSERT_TRUE(step(lctx).ok());
  EXPECT_THAT(joins, ElementsAre("1-2", "2-1", "4-5", "5-4", "late 1", "late 2", "late 4", "late 5"));
}

TEST(ObjectsTest, ALinkRecordWhereAnObjectIsExpectedIsRefusedNamingTheRecord) {
  HandlerTable table = Table();
  ObjHash objects;
  ASSERT_EQ(objects.LookupAdd(kPeer, Identity::OfInode(2, 1), uint32_t{2})->objref, 1u);
  ASSERT_EQ(objects.LookupAdd(kPeer, Identity::OfInode(2, 2), uint32_t{1})->objref, 2u);
  uint32_t nr_objects = 0, nr_links = 0;
  absl::StatusOr<std::string> bytes = WriteObjects(table, objects, &nr_objects, &nr_links);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  RestoreTable restored;
  std::vector<LateStep> late;
  // One object more than written: the first link is read as an object.
  absl::Status st = ReadBack(table, *bytes, nr_objects + 1, nr_links, restored, late);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("TEST_PEER_LINK"));
  EXPECT_THAT(st.message(), HasSubstr("not an object record"));
}

TEST(ObjectsTest, AHandlerWithHalfItsLinksIsRefused) {
  HandlerTable t;
  absl::Status st =
      t.Register({kPeer, "TEST_PEER", kHdrPeer, CheckpointPeer, RestorePeer, {kHdrPeerLink, CheckpointPeerLink, nullptr}});
  EXPECT_FALSE(st.ok());
}

}  // namespace
}  // namespace ckpt::objhash
