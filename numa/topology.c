/* SPDX-License-Identifier: MIT */
/*
 * The facts a plan starts from: the topology (this machine, an XML file or
 * a synthetic description), where the NIC hangs off it, and where the guest
 * memory lives.
 */
#define _GNU_SOURCE
#include "placement.h"

#include <rdmamig/rdmamig.h>
#include <rdmamig/transport.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef RMIG_NUMA_HAVE_VERBS
#include <hwloc/openfabrics-verbs.h>
#include <infiniband/verbs.h>
#endif

static void summarise(struct rmig_placement *p)
{
	hwloc_topology_t t = p->topo;

	snprintf(p->summary, sizeof(p->summary),
		 "%d package%s, %d NUMA node%s, %d cores, %d cpus",
		 hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE),
		 hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE) == 1 ? "" : "s",
		 hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE),
		 hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) == 1 ? "" : "s",
		 hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE),
		 hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU));
}

/* XML if spec names a readable file, else a synthetic description. */
static int set_source(struct rmig_placement *p, const char *spec)
{
	struct stat st;

	if (!spec) {
		snprintf(p->source, sizeof(p->source), "this machine");
		/*
		 * NICs only.  The linux component finds PCI devices in sysfs by
		 * itself; the "pci" plugin (libpciaccess) adds only model names and
		 * leaks its name table (~600 KiB) on every load, the GPU plugins
		 * are slow (gl opens the X display) and leak too.
		 */
		static const char *const skip[] = { "pci", "opencl", "gl" };

		for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
			hwloc_topology_set_components(p->topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST,
						      skip[i]);
		return hwloc_topology_set_io_types_filter(p->topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	}
	/* What the file says is what there is: keep all of its I/O objects. */
	hwloc_topology_set_io_types_filter(p->topo, HWLOC_TYPE_FILTER_KEEP_ALL);
	if (stat(spec, &st) == 0 && S_ISREG(st.st_mode)) {
		snprintf(p->source, sizeof(p->source), "XML file %s", spec);
		if (hwloc_topology_set_xml(p->topo, spec) < 0)
			return rmig_set_error(NULL, -EINVAL,
					      "cannot read hwloc XML topology %s: %s (write one with lstopo --of xml)",
					      spec, strerror(errno));
		return 0;
	}
	snprintf(p->source, sizeof(p->source), "synthetic \"%s\"", spec);
	if (hwloc_topology_set_synthetic(p->topo, spec) < 0)
		return rmig_set_error(NULL, -EINVAL,
				      "topology '%s' is neither a readable hwloc XML file nor a synthetic "
				      "description such as \"pack:2 [numa] core:4 pu:2\"", spec);
	return 0;
}

int place_load_topology(struct rmig_placement *p, const char *spec)
{
	int rc;

	if (hwloc_topology_init(&p->topo) < 0)
		return rmig_set_error(NULL, -ENOMEM, "cannot initialise hwloc: out of memory");
	rc = set_source(p, spec);
	if (rc < 0)
		return rc;
	if (hwloc_topology_load(p->topo) < 0)
		return rmig_set_error(NULL, -EINVAL, "hwloc cannot load the topology of %s: %s",
				      p->source, strerror(errno));
	p->thissystem = hwloc_topology_is_thissystem(p->topo);
	summarise(p);
	return 0;
}

int place_parse_list(const char *s, hwloc_bitmap_t set)
{
	hwloc_bitmap_zero(set);
	while (s && *s) {
		char *end;
		unsigned long a, b;

		if (!isdigit((unsigned char)*s))
			return -EINVAL;
		a = b = strtoul(s, &end, 10);
		if (*end == '-') {
			if (!isdigit((unsigned char)end[1]))
				return -EINVAL;
			b = strtoul(end + 1, &end, 10);
		}
		/* Bound the set: no machine has a million cpus, a typo might. */
		if (b < a || b >= 1u << 20)
			return -EINVAL;
		hwloc_bitmap_set_range(set, (unsigned)a, (int)b);
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	return 0;
}

void place_obj_label(hwloc_obj_t obj, char *buf, size_t len)
{
	char type[32];

	switch (obj->type) {
	case HWLOC_OBJ_MACHINE:
		snprintf(buf, len, "the machine");
		return;
	case HWLOC_OBJ_PACKAGE:
		snprintf(buf, len, "package %u", obj->logical_index);
		return;
	case HWLOC_OBJ_NUMANODE:
		snprintf(buf, len, "node %u", obj->os_index);
		return;
	default:
		hwloc_obj_type_snprintf(type, sizeof(type), obj, 0);
		snprintf(buf, len, "%s %u", type, obj->logical_index);
		return;
	}
}

int place_cpu_node(hwloc_topology_t topo, int cpu)
{
	hwloc_obj_t n = NULL;

	while ((n = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, n)))
		if (n->cpuset && hwloc_bitmap_isset(n->cpuset, (unsigned)cpu))
			return (int)n->os_index;
	return -1;
}

/* "0000:3b:00.0" or "3b:00.0", nothing else (so "eth0" is not a bus id). */
static bool is_pci_id(const char *s)
{
	unsigned d, b, dev, f;
	int n = -1;

	if (sscanf(s, "%4x:%2x:%2x.%1x%n", &d, &b, &dev, &f, &n) == 4 && n == (int)strlen(s))
		return true;
	n = -1;
	return sscanf(s, "%2x:%2x.%1x%n", &b, &dev, &f, &n) == 3 && n == (int)strlen(s);
}

/*
 * The address part of "192.0.2.2", "192.0.2.2:4444", "fe80::1" or
 * "[fe80::1]:4444" (what rmig_local_addr gives), parsed into want.
 * Returns the address family, or 0 if s is not an address.
 */
static int parse_addr(const char *s, unsigned char want[sizeof(struct in6_addr)])
{
	char host[INET6_ADDRSTRLEN + 8];
	const char *colon = strchr(s, ':'), *end;
	size_t n;

	if (*s == '[') {
		end = strchr(s, ']');
		if (!end || (end[1] && end[1] != ':'))
			return 0;
		s++;
		n = (size_t)(end - s);
	} else if (colon && !strchr(colon + 1, ':')) {
		n = (size_t)(colon - s); /* one colon: IPv4 with a port */
	} else {
		n = strlen(s);
	}
	if (n >= sizeof(host))
		return 0;
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, want) == 1)
		return AF_INET;
	return inet_pton(AF_INET6, host, want) == 1 ? AF_INET6 : 0;
}

/*
 * An IP address (the local end of a connection, any backend): the
 * interface holding it on this machine, into name.  False if s is not an
 * address or no interface here holds it.
 */
static bool iface_of_addr(const char *s, char *name, size_t len)
{
	unsigned char want[sizeof(struct in6_addr)];
	struct ifaddrs *ifs, *i;
	bool found = false;
	int af = parse_addr(s, want);

	if (!af || getifaddrs(&ifs) < 0)
		return false;
	for (i = ifs; i && !found; i = i->ifa_next) {
		const void *have;

		if (!i->ifa_addr || i->ifa_addr->sa_family != af)
			continue;
		have = af == AF_INET ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
				     : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		if (!memcmp(have, want, af == AF_INET ? 4 : 16)) {
			snprintf(name, len, "%s", i->ifa_name);
			found = true;
		}
	}
	freeifaddrs(ifs);
	return found;
}

static hwloc_obj_t pci_parent(hwloc_obj_t obj)
{
	while (obj && obj->type != HWLOC_OBJ_PCI_DEVICE)
		obj = obj->parent;
	return obj;
}

static hwloc_obj_t find_osdev(hwloc_topology_t t, const char *name)
{
	hwloc_obj_t o = NULL;

	while ((o = hwloc_get_next_osdev(t, o)))
		if (o->name && !strcmp(o->name, name))
			return o;
	return NULL;
}

/* The alphabetically first RDMA device this machine's sysfs lists, into buf. */
static bool first_rdma_in_sysfs(char *buf, size_t len)
{
	DIR *d = opendir("/sys/class/infiniband");
	struct dirent *e;
	bool found = false;

	if (!d)
		return false;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && strlen(e->d_name) < len &&
		    (!found || strcmp(e->d_name, buf) < 0)) {
			snprintf(buf, len, "%s", e->d_name);
			found = true;
		}
	closedir(d);
	return found;
}

/*
 * "auto": the first RDMA device (in the topology, else in sysfs: software
 * devices such as rxe0 have no PCI device, so hwloc lists no object for
 * them), else the first network interface on PCI.  NULL if none.
 */
static const char *pick_nic(struct rmig_placement *p, char *buf, size_t len)
{
	hwloc_obj_t o = NULL;

	while ((o = hwloc_get_next_osdev(p->topo, o)))
		if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS && o->name)
			return o->name;
	if (p->thissystem && first_rdma_in_sysfs(buf, len))
		return buf;
	while ((o = hwloc_get_next_osdev(p->topo, o)))
		if (o->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK && o->name && pci_parent(o))
			return o->name;
	return NULL;
}

static void describe_pci(hwloc_obj_t pci, char *buf, size_t len)
{
	const char *model = hwloc_obj_get_info_by_name(pci, "PCIDevice");
	size_t n;

	n = (size_t)snprintf(buf, len, "PCI %04x:%02x:%02x.%x", pci->attr->pcidev.domain,
			     pci->attr->pcidev.bus, pci->attr->pcidev.dev, pci->attr->pcidev.func);
	if (model && n < len)
		snprintf(buf + n, len - n, ", %s", model);
}

static void describe_nic(struct rmig_placement *p, hwloc_obj_t obj)
{
	char pci[128] = "";
	hwloc_obj_t pcidev = pci_parent(obj);
	const char *kind = "device";

	if (pcidev)
		describe_pci(pcidev, pci, sizeof(pci));
	if (obj->type == HWLOC_OBJ_OS_DEVICE)
		kind = obj->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS ? "RDMA device"
		     : obj->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK ? "network interface"
		     : "OS device";
	if (obj->type == HWLOC_OBJ_PCI_DEVICE)
		snprintf(p->nic_desc, sizeof(p->nic_desc), "%s", pci);
	else if (pcidev)
		snprintf(p->nic_desc, sizeof(p->nic_desc), "%s %s (%s)", kind, obj->name, pci);
	else
		snprintf(p->nic_desc, sizeof(p->nic_desc), "%s %s (not on PCI)", kind, obj->name);
}

/* The NIC hangs off anchor: the locality sentence. */
static void set_anchor(struct rmig_placement *p, hwloc_obj_t anchor, const char *how)
{
	char label[64], cpus[96];

	p->anchor = anchor;
	place_obj_label(anchor, label, sizeof(label));
	hwloc_bitmap_list_snprintf(cpus, sizeof(cpus), anchor->cpuset);
	if (anchor == hwloc_get_root_obj(p->topo))
		snprintf(p->locality, sizeof(p->locality),
			 "%s is attached to the whole machine (cpus %s), not to one package (%s)",
			 p->nic, cpus, how);
	else
		snprintf(p->locality, sizeof(p->locality), "%s is local to %s (cpus %s, %s)",
			 p->nic, label, cpus, how);
}

#ifdef RMIG_NUMA_HAVE_VERBS
/* The verbs device is not an OS device in the topology: ask rdma-core's sysfs through hwloc. */
static bool verbs_locality(struct rmig_placement *p, const char *name)
{
	struct ibv_device **list;
	hwloc_bitmap_t set;
	bool found = false;
	int n;

	char path[128];
	struct stat st;

	/* Without it hwloc's helper answers "the whole machine": no locality is no answer. */
	snprintf(path, sizeof(path), "/sys/class/infiniband/%.64s/device/local_cpus", name);
	if (!p->thissystem || stat(path, &st) < 0 || !(list = ibv_get_device_list(&n)))
		return false;
	set = hwloc_bitmap_alloc();
	for (int i = 0; set && i < n && !found; i++) {
		if (strcmp(ibv_get_device_name(list[i]), name) ||
		    hwloc_ibv_get_device_cpuset(p->topo, list[i], set) < 0)
			continue;
		found = true;
		snprintf(p->nic_desc, sizeof(p->nic_desc), "RDMA device %s (no PCI device in the topology)",
			 name);
		set_anchor(p, hwloc_get_obj_covering_cpuset(p->topo, set),
			   "from its sysfs local_cpus via hwloc's verbs helper");
	}
	hwloc_bitmap_free(set);
	ibv_free_device_list(list);
	return found;
}
#else
static bool verbs_locality(struct rmig_placement *p, const char *name)
{
	(void)p;
	(void)name;
	return false;
}
#endif

/*
 * A software RDMA device (rxe, siw) has no PCI device of its own: it runs on
 * a network interface, whose name sysfs gives ("parent" for rxe and siw,
 * the first port's GID netdev otherwise, e.g. RoCE).  Into netdev.
 */
static bool rdma_netdev(const char *name, char *netdev, size_t len)
{
	static const char *const files[] = { "parent", "ports/1/gid_attrs/ndevs/0" };
	char path[256];

	if (strchr(name, '/') || strlen(name) > 64)
		return false;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		FILE *f;
		bool ok;

		snprintf(path, sizeof(path), "/sys/class/infiniband/%s/%s", name, files[i]);
		if (!(f = fopen(path, "r")))
			continue;
		ok = fgets(netdev, (int)len, f) != NULL;
		fclose(f);
		netdev[strcspn(netdev, "\n")] = '\0';
		if (ok && *netdev)
			return true;
	}
	return false;
}

static void unknown_nic(struct rmig_placement *p, const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/class/infiniband/%.64s", name);
	if (p->thissystem && stat(path, &st) == 0) {
		snprintf(p->locality, sizeof(p->locality),
			 "%s is an RDMA device with no PCI device or network interface in sysfs: "
			 "its locality is unknown", name);
		snprintf(p->nic_desc, sizeof(p->nic_desc), "RDMA device %s (not on PCI)", name);
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/net/%s", name);
	if (p->thissystem && strlen(name) < 64 && stat(path, &st) == 0) {
		snprintf(p->locality, sizeof(p->locality),
			 "%s is a network interface with no PCI device (virtual or loopback): "
			 "its locality is unknown", name);
		snprintf(p->nic_desc, sizeof(p->nic_desc), "network interface %s (not on PCI)", name);
		return;
	}
	snprintf(p->locality, sizeof(p->locality),
		 "%s is not in the topology (no RDMA device, network interface or PCI "
		 "device of that name): its locality is unknown", name);
	snprintf(p->nic_desc, sizeof(p->nic_desc), "%s (not found)", name);
}

void place_find_nic(struct rmig_placement *p, const char *name)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char iface[64], picked[64];
	hwloc_obj_t obj = NULL;

	if (!name || !*name) {
		snprintf(p->nic_desc, sizeof(p->nic_desc), "none given");
		snprintf(p->locality, sizeof(p->locality), "no NIC given: its locality is unknown");
		return;
	}
	if (!strcmp(name, "auto") && !(name = pick_nic(p, picked, sizeof(picked)))) {
		snprintf(p->nic_desc, sizeof(p->nic_desc), "none found");
		snprintf(p->locality, sizeof(p->locality),
			 "no RDMA device or PCI network interface in the topology: "
			 "NIC locality is unknown");
		return;
	}
	if (parse_addr(name, addr)) {
		if (!p->thissystem || !iface_of_addr(name, iface, sizeof(iface))) {
			snprintf(p->nic, sizeof(p->nic), "%s", name);
			snprintf(p->nic_desc, sizeof(p->nic_desc), "address %s (no interface)", name);
			snprintf(p->locality, sizeof(p->locality),
				 "no interface of %s holds address %s: its locality is unknown",
				 p->thissystem ? "this machine" : "that topology", name);
			return;
		}
		name = iface; /* from here on, the interface holding the address */
		obj = find_osdev(p->topo, name);
	} else if (is_pci_id(name)) {
		obj = hwloc_get_pcidev_by_busidstring(p->topo, name);
	} else {
		obj = find_osdev(p->topo, name);
	}
	snprintf(p->nic, sizeof(p->nic), "%s", name);
	if (!obj && p->thissystem && rdma_netdev(name, iface, sizeof(iface)) &&
	    (obj = find_osdev(p->topo, iface))) {
		char via[sizeof(p->nic_desc)];

		describe_nic(p, obj);
		memcpy(via, p->nic_desc, sizeof(via));
		if (snprintf(p->nic_desc, sizeof(p->nic_desc), "RDMA device %s on %s", name, via) < 0)
			p->nic_desc[0] = '\0';
		set_anchor(p, hwloc_get_non_io_ancestor_obj(p->topo, obj),
			   "from the PCI position of its network interface");
		return;
	}
	if (!obj) {
		if (!verbs_locality(p, name))
			unknown_nic(p, name);
		return;
	}
	describe_nic(p, obj);
	set_anchor(p, hwloc_get_non_io_ancestor_obj(p->topo, obj),
		   obj->type == HWLOC_OBJ_PCI_DEVICE || pci_parent(obj) ? "from its PCI position"
									 : "from its OS device");
}

int place_find_guest(struct rmig_placement *p, const struct rmig_placement_opts *o)
{
	hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
	const char *how;
	char list[64];
	int rc = 0;

	p->guest_node = -1;
	if (!nodes)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a nodeset");
	if (o->guest_nodes && *o->guest_nodes) {
		how = "as given";
		if (place_parse_list(o->guest_nodes, nodes) < 0) {
			rc = rmig_set_error(NULL, -EINVAL,
					    "guest nodes '%s' is not a list of NUMA node numbers such as \"1\" or \"0-1\"",
					    o->guest_nodes);
			goto free_nodes;
		}
		hwloc_bitmap_and(nodes, nodes, hwloc_topology_get_topology_nodeset(p->topo));
	} else if (o->guest_addr && o->guest_len && p->thissystem) {
		how = "where its pages are";
		if (hwloc_get_area_memlocation(p->topo, o->guest_addr, o->guest_len, nodes,
					       HWLOC_MEMBIND_BYNODESET) < 0)
			hwloc_bitmap_zero(nodes);
	} else {
		snprintf(p->guest, sizeof(p->guest), "unknown (%s)",
			 o->guest_addr ? "an address means nothing on another machine's topology"
				       : "no guest memory given");
		goto free_nodes;
	}
	if (hwloc_bitmap_iszero(nodes)) {
		snprintf(p->guest, sizeof(p->guest),
			 "unknown (no page of it is placed yet, or no such node)");
		goto free_nodes;
	}
	p->guest_node = hwloc_bitmap_first(nodes);
	hwloc_bitmap_list_snprintf(list, sizeof(list), nodes);
	if (hwloc_bitmap_weight(nodes) == 1)
		snprintf(p->guest, sizeof(p->guest), "node %d (%s)", p->guest_node, how);
	else
		snprintf(p->guest, sizeof(p->guest), "spread over nodes %s (%s); node %d counts",
			 list, how, p->guest_node);
free_nodes:
	hwloc_bitmap_free(nodes);
	return rc;
}
