#!/usr/bin/env python3
# Regenerate the XML fixtures: machines no CI has, with a NIC where we want it.
# lstopo turns a synthetic description into XML; this adds the PCI NICs
# (host bridge -> PCI device -> OS devices) under the object given.
# Run from this folder: python3 generate.py (needs hwloc's lstopo-no-graphics).
import subprocess
import xml.etree.ElementTree as ET

gp = [1000]


def obj(parent, attrs, infos=()):
    gp[0] += 1
    e = ET.SubElement(parent, "object", dict(attrs, gp_index=str(gp[0])))
    for k, v in infos:
        ET.SubElement(e, "info", name=k, value=v)
    return e


def nic(parent, busid, model, osdevs):
    bus = busid.split(":")[1]
    dom = busid.split(":")[0]
    bridge = obj(parent, {"type": "Bridge", "bridge_type": "0-1", "depth": "0",
                          "bridge_pci": "%s:[%s-%s]" % (dom, bus, bus)})
    intel = model.startswith("Ethernet")
    pci = obj(bridge, {"type": "PCIDev", "pci_busid": busid,
                       "pci_type": "0200 [8086:1572] [8086:0000] 02" if intel
                       else "0200 [15b3:1017] [15b3:0007] 00",
                       "pci_link_speed": "15.753846"},
              [("PCIVendor", "Intel Corporation" if intel else "Mellanox Technologies"),
               ("PCIDevice", model)])
    for name, kind in osdevs:
        obj(pci, {"type": "OSDev", "name": name, "osdev_type": str(kind)})


def find(root, otype, logical):
    found = [e for e in root.iter("object") if e.get("type") == otype]
    return found[logical]


def make(path, synthetic, nics):
    xml = subprocess.run(["lstopo-no-graphics", "-i", synthetic, "--of", "xml", "-"],
                         check=True, capture_output=True, text=True).stdout
    root = ET.fromstring(xml)
    machine = root.find("object")
    for info in machine.findall("info"):
        if info.get("name") == "ProcessName":
            machine.remove(info)
    for where, busid, model, osdevs in nics:
        parent = machine if where is None else find(root, *where)
        nic(parent, busid, model, osdevs)
    ET.indent(root, "  ")
    with open(path, "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<!DOCTYPE topology SYSTEM "hwloc2.dtd">\n')
        f.write(ET.tostring(root, encoding="unicode"))
        f.write("\n")


RDMA, NET = 3, 2
# Two sockets, one NUMA node each, 4 cores each, no SMT.  The RDMA NIC sits
# on package 1; an Ethernet NIC on package 0; a management NIC on the
# chipset (attached to the whole machine).
make("two-socket.xml", "pack:2 [numa] core:4 pu:1", [
    (("Package", 1), "0000:3b:00.0", "MT27800 Family [ConnectX-5]",
     [("mlx5_0", RDMA), ("ens3f0", NET)]),
    (("Package", 0), "0000:18:00.0", "Ethernet Controller X710",
     [("eno1", NET)]),
    (None, "0000:00:1f.6", "Ethernet Connection I219-LM", [("eno0", NET)]),
])
# The same with 2 hardware threads per core, numbered the Intel way: the
# siblings of cpu N are N and N+8.
make("two-socket-smt.xml",
     "pack:2 [numa] core:4 pu:2(indexes=0,8,1,9,2,10,3,11,4,12,5,13,6,14,7,15)", [
         (("Package", 1), "0000:3b:00.0", "MT27800 Family [ConnectX-5]",
          [("mlx5_0", RDMA), ("ens3f0", NET)]),
     ])
# Two sockets, each split in two NUMA nodes (sub-NUMA clustering, one L3
# each): 4 nodes of 2 cpus.  The NIC sits on node 2 (package 1's first L3).
make("four-numa.xml", "pack:2 l3:2 [numa] core:2 pu:1", [
    (("L3Cache", 2), "0000:c1:00.0", "MT28908 Family [ConnectX-6]",
     [("mlx5_1", RDMA), ("ens8f0", NET)]),
])
