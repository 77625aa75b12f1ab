/* test_egress.c — the egress policy (http/egress.h): address classes on both sides of every
 * range boundary, the policy's words, URL checks through libcurl's parser, same-origin for
 * secrets, and path confinement (roots, forbidden trees, the data directory, "..", symlinks). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/egress.h"

static enum sd_addr_class classify_text(const char *text)
{
    struct sockaddr_storage ss = {0};
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
    }
    return sd_egress_classify((const struct sockaddr *)&ss);
}

static void test_classify_boundaries(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        enum sd_addr_class want;
    } cases[] = {
        /* 0.0.0.0/8 | 1.0.0.0 */
        {"0.0.0.0", SD_ADDR_RESERVED},
        {"0.255.255.255", SD_ADDR_RESERVED},
        {"1.0.0.0", SD_ADDR_PUBLIC},
        /* 10/8 */
        {"9.255.255.255", SD_ADDR_PUBLIC},
        {"10.0.0.0", SD_ADDR_PRIVATE},
        {"10.255.255.255", SD_ADDR_PRIVATE},
        {"11.0.0.0", SD_ADDR_PUBLIC},
        /* 100.64/10, with Alibaba's metadata address inside */
        {"100.63.255.255", SD_ADDR_PUBLIC},
        {"100.64.0.0", SD_ADDR_PRIVATE},
        {"100.100.100.199", SD_ADDR_PRIVATE},
        {"100.100.100.200", SD_ADDR_METADATA},
        {"100.100.100.201", SD_ADDR_PRIVATE},
        {"100.127.255.255", SD_ADDR_PRIVATE},
        {"100.128.0.0", SD_ADDR_PUBLIC},
        /* 127/8 */
        {"126.255.255.255", SD_ADDR_PUBLIC},
        {"127.0.0.0", SD_ADDR_LOOPBACK},
        {"127.0.0.1", SD_ADDR_LOOPBACK},
        {"127.255.255.255", SD_ADDR_LOOPBACK},
        {"128.0.0.0", SD_ADDR_PUBLIC},
        /* 169.254/16, with the metadata address inside */
        {"169.253.255.255", SD_ADDR_PUBLIC},
        {"169.254.0.0", SD_ADDR_LINK_LOCAL},
        {"169.254.169.253", SD_ADDR_LINK_LOCAL},
        {"169.254.169.254", SD_ADDR_METADATA},
        {"169.254.169.255", SD_ADDR_LINK_LOCAL},
        {"169.254.255.255", SD_ADDR_LINK_LOCAL},
        {"169.255.0.0", SD_ADDR_PUBLIC},
        /* 172.16/12 */
        {"172.15.255.255", SD_ADDR_PUBLIC},
        {"172.16.0.0", SD_ADDR_PRIVATE},
        {"172.31.255.255", SD_ADDR_PRIVATE},
        {"172.32.0.0", SD_ADDR_PUBLIC},
        /* 192.168/16 */
        {"192.167.255.255", SD_ADDR_PUBLIC},
        {"192.168.0.0", SD_ADDR_PRIVATE},
        {"192.168.255.255", SD_ADDR_PRIVATE},
        {"192.169.0.0", SD_ADDR_PUBLIC},
        /* 224/4 multicast, 240/4 reserved */
        {"223.255.255.255", SD_ADDR_PUBLIC},
        {"224.0.0.0", SD_ADDR_RESERVED},
        {"239.255.255.255", SD_ADDR_RESERVED},
        {"240.0.0.0", SD_ADDR_RESERVED},
        {"255.255.255.255", SD_ADDR_RESERVED},
        {"8.8.8.8", SD_ADDR_PUBLIC},
        /* IPv6 */
        {"::", SD_ADDR_RESERVED},
        {"::1", SD_ADDR_LOOPBACK},
        {"::2", SD_ADDR_RESERVED},
        {"::ffff:127.0.0.1", SD_ADDR_LOOPBACK},
        {"::ffff:169.254.169.254", SD_ADDR_METADATA},
        {"::ffff:10.0.0.1", SD_ADDR_PRIVATE},
        {"::ffff:8.8.8.8", SD_ADDR_PUBLIC},
        {"64:ff9b::a9fe:a9fe", SD_ADDR_METADATA}, /* NAT64 of 169.254.169.254 */
        {"64:ff9b::808:808", SD_ADDR_PUBLIC},
        {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SD_ADDR_PUBLIC},
        {"fc00::", SD_ADDR_PRIVATE},
        {"fd00:ec2::253", SD_ADDR_PRIVATE},
        {"fd00:ec2::254", SD_ADDR_METADATA},
        {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SD_ADDR_PRIVATE},
        {"fe00::", SD_ADDR_PUBLIC},
        {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SD_ADDR_PUBLIC},
        {"fe80::", SD_ADDR_LINK_LOCAL},
        {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SD_ADDR_LINK_LOCAL},
        {"fec0::", SD_ADDR_PRIVATE},
        {"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SD_ADDR_PRIVATE},
        {"ff00::", SD_ADDR_RESERVED},
        {"ff02::1", SD_ADDR_RESERVED},
        {"2001:db8::1", SD_ADDR_PUBLIC},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum sd_addr_class got = classify_text(cases[i].addr);
        if (got != cases[i].want) {
            fail_msg("%s: got %s, want %s", cases[i].addr, sd_addr_class_name(got),
                     sd_addr_class_name(cases[i].want));
        }
    }
}

static void test_classify_host(void **state)
{
    (void)state;
    static const struct {
        const char *host;
        int r;
        enum sd_addr_class want;
    } cases[] = {
        {"127.0.0.1", 0, SD_ADDR_LOOPBACK},
        {"::1", 0, SD_ADDR_LOOPBACK},
        {"localhost", 0, SD_ADDR_LOOPBACK},
        {"LOCALHOST.", 0, SD_ADDR_LOOPBACK},
        {"api.localhost", 0, SD_ADDR_LOOPBACK},
        {"metadata.google.internal", 0, SD_ADDR_METADATA},
        {"169.254.169.254", 0, SD_ADDR_METADATA},
        /* names are decided when they resolve, never by their text */
        {"127.attacker.example", -ENOENT, SD_ADDR_PUBLIC},
        {"localhost.attacker.example", -ENOENT, SD_ADDR_PUBLIC},
        {"notlocalhost", -ENOENT, SD_ADDR_PUBLIC},
        {"box.example", -ENOENT, SD_ADDR_PUBLIC},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum sd_addr_class c = SD_ADDR_PUBLIC;
        int r = sd_egress_classify_host(cases[i].host, &c);
        if (r != cases[i].r || (r == 0 && c != cases[i].want)) {
            fail_msg("%s: got r=%d class %s", cases[i].host, r, sd_addr_class_name(c));
        }
    }
}

static void test_policy(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int r;
        bool loopback, private_;
    } cases[] = {
        {NULL, 0, false, true}, /* unset: private only */
        {"", 0, false, false},
        {"none", 0, false, false},
        {"loopback", 0, true, false},
        {"private", 0, false, true},
        {"loopback,private", 0, true, true},
        {" private , loopback ", 0, true, true},
        {"public", -EINVAL, false, false},
        {"loopback,metadata", -EINVAL, false, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sd_egress_policy p = {true, true};
        assert_int_equal(sd_egress_policy_parse(cases[i].text, &p), cases[i].r);
        assert_int_equal(p.allow_loopback, cases[i].loopback);
        assert_int_equal(p.allow_private, cases[i].private_);
    }
    struct sd_egress_policy all = {true, true}, none = {false, false};
    assert_null(sd_egress_refusal(&none, SD_ADDR_PUBLIC));
    assert_non_null(sd_egress_refusal(&none, SD_ADDR_PRIVATE));
    assert_non_null(sd_egress_refusal(&none, SD_ADDR_LOOPBACK));
    assert_null(sd_egress_refusal(&all, SD_ADDR_PRIVATE));
    assert_null(sd_egress_refusal(&all, SD_ADDR_LOOPBACK));
    /* never, whatever the instance allows */
    assert_non_null(sd_egress_refusal(&all, SD_ADDR_LINK_LOCAL));
    assert_non_null(sd_egress_refusal(&all, SD_ADDR_METADATA));
    assert_non_null(sd_egress_refusal(&all, SD_ADDR_RESERVED));
}

static void test_urls(void **state)
{
    (void)state;
    static const char *const web[] = {"http", "https", NULL};
    static const char *const sftp[] = {"sftp", NULL};
    struct sd_egress_policy none = {false, false}, all = {true, true};
    static const struct {
        const char *url;
        const char *const *schemes;
        bool allow;
        int r;
        const char *why; /* part of the reason */
    } cases[] = {
        {"https://api.box.example/v1", web, false, 0, NULL},
        {"http://127.attacker.example/x", web, false, 0, NULL}, /* a name: connect time */
        {"http://127.0.0.1:8080/x", web, true, 0, NULL},
        {"http://127.0.0.1:8080/x", web, false, -EINVAL, "loopback"},
        {"http://[::1]/x", web, false, -EINVAL, "loopback"},
        {"http://localhost/x", web, false, -EINVAL, "loopback"},
        {"http://10.1.2.3/x", web, false, -EINVAL, "private"},
        {"http://10.1.2.3/x", web, true, 0, NULL},
        {"http://169.254.169.254/latest/meta-data/", web, true, -EINVAL, "metadata"},
        {"http://[fd00:ec2::254]/", web, true, -EINVAL, "metadata"},
        {"http://[fe80::1]/", web, true, -EINVAL, "link-local"},
        {"http://169.254.1.1/", web, true, -EINVAL, "link-local"},
        {"http://metadata.google.internal/computeMetadata/v1/", web, true, -EINVAL, "metadata"},
        {"http://0.0.0.0:8080/", web, true, -EINVAL, "not a destination"},
        /* numeric forms libcurl normalises are judged as the address they are */
        {"http://2852039166/", web, true, -EINVAL, "metadata"},
        {"http://0x7f.1/", web, false, -EINVAL, "loopback"},
        {"http://user:pass@box.example/", web, true, -EINVAL, "user:password@"},
        {"http://user@box.example/", web, true, -EINVAL, "user:password@"},
        {"sftp://bob@files.example/in/", sftp, true, -EINVAL, "user:password@"},
        {"https://box.example/a\r\nX-Injected: yes", web, true, -EINVAL, "characters"},
        {"https://box.example/a b", web, true, -EINVAL, "characters"},
        {"https://box.example/\x01", web, true, -EINVAL, "characters"},
        {"ftp://box.example/", web, true, -EINVAL, "scheme"},
        {"file:///etc/passwd", web, true, -EINVAL, NULL},
        {"sftp://files.example:2222/in/", sftp, true, 0, NULL},
        {"https://files.example/in/", sftp, true, -EINVAL, "scheme"},
        {"not a url", web, true, -EINVAL, NULL},
        {"https://", web, true, -EINVAL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char why[320] = "";
        struct sd_url u;
        int r = sd_egress_check_url(cases[i].url, cases[i].schemes, cases[i].allow ? &all : &none,
                                    &u, why, sizeof(why));
        if (r != cases[i].r || (cases[i].why && !strstr(why, cases[i].why))) {
            fail_msg("%s: got r=%d why='%s'", cases[i].url, r, why);
        }
    }
    struct sd_url u;
    char why[320];
    assert_int_equal(sd_egress_check_url("HTTP://Box.Example/x", web, &none, &u, why, sizeof(why)),
                     0);
    assert_string_equal(u.scheme, "http");
    assert_string_equal(u.host, "box.example");
    assert_int_equal(u.port, 80);
    assert_false(u.host_loopback);
    assert_int_equal(sd_egress_check_url("http://[::1]:9000/x", web, &all, &u, why, sizeof(why)),
                     0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9000);
    assert_true(u.host_loopback);
    assert_int_equal(
        sd_egress_check_url("http://127.attacker.example/x", web, &all, &u, why, sizeof(why)), 0);
    assert_false(u.host_loopback);
}

static void test_same_origin(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        bool same;
    } cases[] = {
        {"https://api.box.example/v1", "https://api.box.example/v2?x=1", true},
        {"https://api.box.example/v1", "https://API.box.example:443/v1", true},
        {"https://api.box.example/v1", "http://api.box.example/v1", false},
        {"https://api.box.example/v1", "https://api.box.example:8443/v1", false},
        {"https://api.box.example/v1", "https://evil.example/v1", false},
        {"https://api.box.example/v1", "https://api.box.example.evil.example/v1", false},
        {"sftp://files.example/in/", "sftp://files.example:22/other/", true},
        {"sftp://files.example/in/", "sftp://files.example:2222/in/", false},
        {"https://api.box.example/v1", "not a url", false},
        {NULL, "https://api.box.example/v1", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (sd_egress_same_origin(cases[i].a, cases[i].b) != cases[i].same) {
            fail_msg("%s vs %s: want %d", cases[i].a ? cases[i].a : "(null)", cases[i].b,
                     cases[i].same);
        }
    }
}

static void test_paths(void **state)
{
    (void)state;
    char base[] = "/tmp/sd-test-egress-XXXXXX";
    assert_non_null(mkdtemp(base));
    char root[PATH_MAX], data[PATH_MAX], drop[PATH_MAX], out[PATH_MAX], link_out[PATH_MAX],
        link_in[PATH_MAX], roots[2 * PATH_MAX];
    snprintf(root, sizeof(root), "%s/root", base);
    snprintf(data, sizeof(data), "%s/root/data", base);
    snprintf(drop, sizeof(drop), "%s/root/drop", base);
    snprintf(out, sizeof(out), "%s/outside", base);
    snprintf(link_out, sizeof(link_out), "%s/root/escape", base);
    snprintf(link_in, sizeof(link_in), "%s/root/inside", base);
    assert_int_equal(mkdir(root, 0700), 0);
    assert_int_equal(mkdir(data, 0700), 0);
    assert_int_equal(mkdir(drop, 0700), 0);
    assert_int_equal(mkdir(out, 0700), 0);
    assert_int_equal(symlink(out, link_out), 0);
    assert_int_equal(symlink("/etc", link_in), 0);
    snprintf(roots, sizeof(roots), "/nonexistent-root:%s", root);

    static const struct {
        const char *suffix; /* appended to base, or an absolute path when it starts with '!' */
        int r;
        const char *why;
    } cases[] = {
        {"/root/drop", 0, NULL},
        {"/root/drop/", 0, NULL},
        {"/root/drop/not/yet/there", 0, NULL},
        {"/root", -EINVAL, "data directory"}, /* above it: a drop folder would hold it */
        {"/outside", -EINVAL, "file roots"},
        {"/rootless", -EINVAL, "file roots"}, /* a sibling sharing the prefix */
        {"/root/drop/../../outside", -EINVAL, "\"..\""},
        {"/root/./drop", -EINVAL, "\"..\""},
        {"/root/escape", -EINVAL, "file roots"}, /* a symlink out of the root */
        {"/root/escape/new/folder", -EINVAL, "file roots"},
        {"/root/inside/passwd", -EINVAL, "/etc"}, /* a symlink to /etc */
        {"/root/data", -EINVAL, "data directory"},
        {"/root/data/connectors/x", -EINVAL, "data directory"},
        {"!/etc/ssh/ssh_host_ed25519_key", -EINVAL, NULL},
        {"!relative/path", -EINVAL, "absolute"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[PATH_MAX], why[512] = "";
        if (cases[i].suffix[0] == '!') {
            snprintf(path, sizeof(path), "%s", cases[i].suffix + 1);
        } else {
            snprintf(path, sizeof(path), "%s%s", base, cases[i].suffix);
        }
        int r = sd_egress_check_path(path, roots, data, why, sizeof(why));
        if (r != cases[i].r || (cases[i].why && !strstr(why, cases[i].why))) {
            fail_msg("%s: got r=%d why='%s'", path, r, why);
        }
    }
    /* the root "/" still never reaches /etc, /proc, /sys, /dev */
    static const char *const never[] = {
        "/etc/passwd", "/proc/self/environ", "/sys/kernel", "/dev/null", "/etc", NULL};
    for (size_t i = 0; never[i]; i++) {
        char why[512] = "";
        assert_int_equal(sd_egress_check_path(never[i], "/", NULL, why, sizeof(why)), -EINVAL);
    }
    char why[512];
    assert_int_equal(sd_egress_check_path("/srv/stagedoor/drop", "/", NULL, why, sizeof(why)), 0);
    /* the default roots (/srv:/home) when STAGEDOOR_FILE_ROOTS is unset */
    unsetenv("STAGEDOOR_FILE_ROOTS");
    assert_int_equal(sd_egress_check_path("/srv/sftp/opera/upload", NULL, data, why, sizeof(why)),
                     0);
    assert_int_equal(sd_egress_check_path(drop, NULL, data, why, sizeof(why)), -EINVAL);

    unlink(link_out);
    unlink(link_in);
    rmdir(out);
    rmdir(drop);
    rmdir(data);
    rmdir(root);
    rmdir(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_boundaries),
        cmocka_unit_test(test_classify_host),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_same_origin),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
